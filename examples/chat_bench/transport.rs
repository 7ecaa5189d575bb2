//! The transports chat_bench speaks (`--transport`), as PROTOCOL.md
//! ("Transports") describes them: lines over TCP or TLS, or WebSocket on
//! the path `/ws` (over TCP, `ws`, or TLS, `wss`), one text message per
//! line without its `\n`.
//!
//! Whatever the transport, a connection is a [`Reader`], an `AsyncRead` of
//! `\n`-terminated lines (a WebSocket text message comes out as its text
//! and a `\n`, so [`LineBuf`](crate::linebuf::LineBuf) and the line parsing
//! work unchanged), and a [`Writer`], which takes whole lines. The
//! WebSocket client is chat_bench's own, lean frame codec (see [`ws`]).
//!
//! TLS is rustls with its `ring` provider. The server's certificate is
//! checked against `--tls-ca` when given; otherwise any certificate is
//! accepted (the handshake's signatures are still checked): chat_bench only
//! ever connects to loopback addresses, and a server with no `--tls-cert`
//! makes a new self-signed certificate at each start.

use crate::args::Args;
use clap::ValueEnum;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

mod verify;
mod ws;

pub use ws::{WsReader, WsWriter};

/// The path of the chat on a WebSocket port.
pub const WS_PATH: &str = "/ws";

/// How chat_bench reaches the server.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Lines over TCP.
    Tcp,
    /// Lines over TLS.
    Tls,
    /// WebSocket (path /ws): one text message per line.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// Opens connections over `--transport`; made once per run.
pub struct Connector {
    transport: Transport,
    /// Every `--addr`: the nodes members are spread over.
    addrs: Vec<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Bytes of WebSocket frames read ahead per connection.
    ws_buf: usize,
    /// Connections made, to seed each one's masking keys.
    made: AtomicU64,
}

impl Connector {
    pub fn new(args: &Args) -> Result<Self, String> {
        let tls = if args.transport.is_tls() {
            let name = match &args.tls_name {
                Some(name) => ServerName::try_from(name.clone())
                    .map_err(|e| format!("--tls-name {name}: {e}"))?,
                None => ServerName::from(args.addr().ip()),
            };
            Some((TlsConnector::from(tls_config(args)?), name))
        } else {
            None
        };
        Ok(Connector {
            transport: args.transport,
            addrs: args.addrs.clone(),
            tls,
            // Frames are decoded into the member's own line buffer; this
            // one only holds what a read brings in.
            ws_buf: args.read_buf_bytes().min(16 * 1024),
            made: AtomicU64::new(0),
        })
    }

    /// Connects and completes the transport's handshakes (TLS, the
    /// WebSocket upgrade). `tcp_connected` is set once the TCP connect is
    /// done, so a caller that times this out knows how far it got.
    pub async fn connect(
        &self,
        tcp_connected: &mut Option<Instant>,
    ) -> Result<(Reader, Writer), String> {
        self.connect_to(0, tcp_connected).await
    }

    /// [`Connector::connect`] to the `node`-th `--addr` (modulo their
    /// number).
    pub async fn connect_to(
        &self,
        node: usize,
        tcp_connected: &mut Option<Instant>,
    ) -> Result<(Reader, Writer), String> {
        let addr = self.addrs[node % self.addrs.len()];
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        *tcp_connected = Some(Instant::now());
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (reader, mut writer) = match &self.tls {
            None => {
                let (rd, wr) = tcp.into_split();
                (ByteReader::Tcp(rd), ByteWriter::Tcp(wr))
            }
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                let (rd, wr) = tokio::io::split(tls);
                (ByteReader::Tls(rd), ByteWriter::Tls(wr))
            }
        };
        if !self.transport.is_websocket() {
            return Ok((Reader::Lines(reader), Writer::Lines(writer)));
        }
        let host = addr.to_string();
        let reader = ws::upgrade(reader, &mut writer, &host, WS_PATH, self.ws_buf)
            .await
            .map_err(|e| format!("WebSocket: {e}"))?;
        let seed = 0x9E37_79B9_7F4A_7C15 ^ self.made.fetch_add(1, Relaxed);
        Ok((Reader::Ws(reader), Writer::Ws(WsWriter::new(writer, seed))))
    }
}

/// The client's TLS configuration: roots from `--tls-ca`, or any
/// certificate.
fn tls_config(args: &Args) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match &args.tls_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("--tls-ca {}: no certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::AnyCertificate::new(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The reading side of a connection's bytes: TCP, or TLS over it.
pub enum ByteReader {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ByteReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteReader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ByteReader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writing side of a connection's bytes. Dropping it over TCP
/// half-closes the connection (a chat server takes that as leaving).
pub enum ByteWriter {
    Tcp(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl ByteWriter {
    /// Writes `bytes` and, over TLS, flushes the records out.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            ByteWriter::Tcp(w) => w.write_all(bytes).await,
            ByteWriter::Tls(w) => {
                w.write_all(bytes).await?;
                w.flush().await
            }
        }
    }
}

/// The reading side of a connection: `\n`-terminated lines.
pub enum Reader {
    /// Lines over TCP or TLS.
    Lines(ByteReader),
    /// WebSocket text messages, each read as a line.
    Ws(WsReader),
}

impl Reader {
    /// The code of the server's WebSocket close frame, once read.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Reader::Ws(ws) => ws.close_code,
            Reader::Lines(_) => None,
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Lines(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Ws(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writing side of a connection: takes whole lines.
pub enum Writer {
    Lines(ByteWriter),
    Ws(WsWriter),
}

impl Writer {
    /// Sends `lines` (each ending in `\n`; over WebSocket each line is one
    /// text message without its `\n`).
    pub async fn write_all(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Writer::Lines(w) => w.write_all(lines).await,
            Writer::Ws(w) => w.write_lines(lines).await,
        }
    }
}

#[cfg(test)]
mod tests;
