//! The transports chat_bench speaks (`--transport`), as PROTOCOL.md
//! ("Transports") describes them: lines over TCP or TLS, or WebSocket on
//! the path `/ws` (over TCP, `ws`, or TLS, `wss`), one text message per
//! line without its `\n`.
//!
//! Whatever the transport, a connection is a [`Reader`], an `AsyncRead` of
//! `\n`-terminated lines (a WebSocket text message comes out as its text
//! and a `\n`, so [`LineBuf`](crate::linebuf::LineBuf) and the line parsing
//! work unchanged), and a [`Writer`], which takes whole lines.
//!
//! TLS is rustls with its `ring` provider. The server's certificate is
//! checked against `--tls-ca` when given; otherwise any certificate is
//! accepted (the handshake's signatures are still checked): chat_bench only
//! ever connects to loopback addresses, and a server with no `--tls-cert`
//! makes a new self-signed certificate at each start.

use crate::args::Args;
use clap::ValueEnum;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod verify;

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
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_config: WebSocketConfig,
}

impl Connector {
    pub fn new(args: &Args) -> Result<Self, String> {
        let tls = if args.transport.is_tls() {
            let name = match &args.tls_name {
                Some(name) => ServerName::try_from(name.clone())
                    .map_err(|e| format!("--tls-name {name}: {e}"))?,
                None => ServerName::from(args.addr.ip()),
            };
            Some((TlsConnector::from(tls_config(args)?), name))
        } else {
            None
        };
        // tungstenite reads in chunks of its read buffer, allocated for the
        // connection's life: as big as the member's own line buffer, not
        // its default 128 KiB.
        let ws_config = WebSocketConfig::default().read_buffer_size(args.read_buf_bytes());
        Ok(Connector {
            transport: args.transport,
            addr: args.addr,
            tls,
            ws_config,
        })
    }

    /// Connects and completes the transport's handshakes (TLS, the
    /// WebSocket upgrade). `tcp_connected` is set once the TCP connect is
    /// done, so a caller that times this out knows how far it got.
    pub async fn connect(
        &self,
        tcp_connected: &mut Option<Instant>,
    ) -> Result<(Reader, Writer), String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        *tcp_connected = Some(Instant::now());
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let stream = match &self.tls {
            None => Stream::Tcp(tcp),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                Stream::Tls(Box::new(tls))
            }
        };
        if self.transport.is_websocket() {
            let scheme = if self.transport.is_tls() { "wss" } else { "ws" };
            let url = format!("{scheme}://{}{WS_PATH}", self.addr);
            let (ws, _) =
                tokio_tungstenite::client_async_with_config(url, stream, Some(self.ws_config))
                    .await
                    .map_err(|e| format!("WebSocket handshake: {e}"))?;
            let (sink, stream) = ws.split();
            return Ok((Reader::Ws(WsReader::new(stream)), Writer::Ws(sink)));
        }
        Ok(match stream {
            Stream::Tcp(tcp) => {
                let (rd, wr) = tcp.into_split();
                (Reader::Tcp(rd), Writer::Tcp(wr))
            }
            Stream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(*tls);
                (Reader::Tls(rd), Writer::Tls(wr))
            }
        })
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

/// The bytes under a WebSocket: TCP, or TLS over it.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, b),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The reading side of a connection: `\n`-terminated lines.
pub enum Reader {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
    Ws(WsReader),
}

impl Reader {
    /// The code of the server's WebSocket close frame, once read.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Reader::Ws(ws) => ws.close_code,
            _ => None,
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
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Ws(r) => r.poll_lines(cx, buf),
        }
    }
}

/// The writing side of a connection. Dropping it over TCP half-closes the
/// connection (a chat server takes that as leaving).
pub enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
    Ws(SplitSink<WebSocketStream<Stream>, Message>),
}

impl Writer {
    /// Sends `lines` (each ending in `\n`, UTF-8 over WebSocket, where each
    /// line is one text message without its `\n`) and flushes them.
    pub async fn write_all(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write_all(lines).await,
            Writer::Tls(w) => {
                w.write_all(lines).await?;
                w.flush().await
            }
            Writer::Ws(sink) => {
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let text = std::str::from_utf8(line)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    sink.feed(Message::text(text))
                        .await
                        .map_err(io::Error::other)?;
                }
                sink.flush().await.map_err(io::Error::other)
            }
        }
    }
}

/// WebSocket messages read as lines: each text message is its text and a
/// `\n`; pings are answered by tungstenite; the server's close frame is the
/// end of the stream (its code is kept); a binary message is an error.
pub struct WsReader {
    stream: SplitStream<WebSocketStream<Stream>>,
    /// The part of a message that did not fit the caller's buffer.
    pending: Vec<u8>,
    taken: usize,
    close_code: Option<u16>,
    ended: bool,
    error: Option<io::Error>,
}

impl WsReader {
    fn new(stream: SplitStream<WebSocketStream<Stream>>) -> Self {
        WsReader {
            stream,
            pending: Vec::new(),
            taken: 0,
            close_code: None,
            ended: false,
            error: None,
        }
    }

    /// Fills `buf` with as many lines as have arrived (at least one byte,
    /// or the end of the stream).
    fn poll_lines(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.taken < self.pending.len() {
            let n = buf.remaining().min(self.pending.len() - self.taken);
            buf.put_slice(&self.pending[self.taken..self.taken + n]);
            self.taken += n;
            if self.taken == self.pending.len() {
                self.pending = Vec::new();
                self.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        while !self.ended && self.error.is_none() && buf.remaining() > 0 {
            let message = match self.stream.poll_next_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.ended = true;
                    break;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.error = Some(io::Error::other(e));
                    break;
                }
                Poll::Ready(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let text = text.as_bytes();
                    if text.len() < buf.remaining() {
                        buf.put_slice(text);
                        buf.put_slice(b"\n");
                    } else {
                        let (now, later) = text.split_at(buf.remaining());
                        buf.put_slice(now);
                        self.pending = [later, b"\n"].concat();
                    }
                }
                Message::Close(frame) => {
                    self.close_code = Some(frame.map_or(1005, |f| f.code.into()));
                    self.ended = true;
                }
                Message::Binary(_) => {
                    let e = io::Error::new(io::ErrorKind::InvalidData, "a binary message");
                    self.error = Some(e);
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        if buf.filled().len() > start || self.ended {
            Poll::Ready(Ok(()))
        } else if let Some(e) = self.error.take() {
            Poll::Ready(Err(e))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests;
