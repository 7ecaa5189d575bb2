//! Each transport against a small local server on 127.0.0.1 port 0: a line
//! echo over TCP or TLS, and a WebSocket server (tokio-tungstenite, over
//! TCP or TLS) that turns each text message into a reply.

use super::*;
use crate::linebuf::LineBuf;
use clap::Parser;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Bound on every wait of these tests.
const BOUND: Duration = Duration::from_secs(10);

fn args(addr: SocketAddr, transport: &str, extra: &[&str]) -> Args {
    let addr = addr.to_string();
    let mut flags = vec!["chat_bench", "--addr", &addr, "--transport", transport];
    flags.extend_from_slice(extra);
    let mut args = Args::try_parse_from(flags).expect("the flags parse");
    args.validate().expect("the flags are valid");
    args
}

async fn connect(args: &Args) -> Result<(Reader, Writer), String> {
    let connector = Connector::new(args)?;
    timeout(BOUND, connector.connect(&mut None))
        .await
        .expect("connect within the bound")
}

/// The next line the client reads, without its `\n`.
async fn line(reader: &mut Reader, lb: &mut LineBuf) -> Option<String> {
    loop {
        if let Some(line) = lb.next_line() {
            return Some(String::from_utf8(line.to_vec()).expect("UTF-8"));
        }
        let n = timeout(BOUND, lb.fill(reader))
            .await
            .expect("a line within the bound")
            .expect("read");
        if n == 0 {
            return None;
        }
    }
}

/// What a test server does with each accepted stream.
type Serve<S> = fn(S) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A server of one connection: TCP, or TLS with `tls` (see [`tls_server`]).
async fn server(
    tls: Option<tokio_rustls::TlsAcceptor>,
    serve_tcp: Serve<TcpStream>,
    serve_tls: Serve<tokio_rustls::server::TlsStream<TcpStream>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        match tls {
            None => serve_tcp(tcp).await,
            // A client that refused the certificate ends it here.
            Some(acceptor) => {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_tls(tls).await
                }
            }
        }
    });
    addr
}

/// Line echo: each line back as `echo: <line>`.
fn echo_lines<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = format!("echo: {line}\n");
            if wr.write_all(reply.as_bytes()).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    })
}

/// WebSocket chat stand-in: pings first, then answers each text message
/// with `echo: <text>`; `QUIT` gets a close frame (1000); a pong from the
/// client is reported as the text `pong: <payload>`.
fn websocket<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let _ = ws
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await;
        let _ = ws.send(Message::text("NAME")).await;
        while let Some(Ok(message)) = ws.next().await {
            let reply = match message {
                Message::Text(text) if text.as_str() == "QUIT" => {
                    let close = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    let _ = ws.close(Some(close)).await;
                    return;
                }
                Message::Text(text) if text.as_str() == "long" => "x".repeat(100_000),
                Message::Text(text) => format!("echo: {text}"),
                Message::Pong(payload) => format!("pong: {}", String::from_utf8_lossy(&payload)),
                _ => continue,
            };
            if ws.send(Message::text(reply)).await.is_err() {
                return;
            }
        }
    })
}

#[tokio::test]
async fn tcp_carries_lines_as_they_are() {
    let addr = server(None, echo_lines, echo_lines).await;
    let (mut reader, mut writer) = connect(&args(addr, "tcp", &[])).await.expect("connect");
    writer.write_all(b"one\ntwo\n").await.expect("write");
    let mut lb = LineBuf::new(8192);
    assert_eq!(
        line(&mut reader, &mut lb).await.as_deref(),
        Some("echo: one")
    );
    assert_eq!(
        line(&mut reader, &mut lb).await.as_deref(),
        Some("echo: two")
    );
    assert_eq!(reader.close_code(), None);
}

#[tokio::test]
async fn ws_sends_each_line_as_one_text_message_and_reads_messages_as_lines() {
    let addr = server(None, websocket, websocket).await;
    let (mut reader, mut writer) = connect(&args(addr, "ws", &[])).await.expect("connect");
    let mut lb = LineBuf::new(8192);
    assert_eq!(line(&mut reader, &mut lb).await.as_deref(), Some("NAME"));
    writer
        .write_all(b"ana\nhello there\n")
        .await
        .expect("write");
    // The server pinged first: tungstenite answered it with the next read
    // or write, and the server reports the pong as a line.
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(line(&mut reader, &mut lb).await.expect("a line"));
    }
    got.sort();
    assert_eq!(
        got,
        ["echo: ana", "echo: hello there", "pong: are you there"]
    );
    writer.write_all(b"QUIT\n").await.expect("write");
    assert_eq!(
        line(&mut reader, &mut lb).await,
        None,
        "the close frame ends the lines"
    );
    assert_eq!(reader.close_code(), Some(1000));
}

#[tokio::test]
async fn a_ws_message_longer_than_the_read_buffer_comes_out_whole() {
    let addr = server(None, websocket, websocket).await;
    let (mut reader, mut writer) = connect(&args(addr, "ws", &[])).await.expect("connect");
    writer.write_all(b"long\n").await.expect("write");
    // Read in 4 KiB pieces: the message is 100,000 bytes and a `\n`.
    let mut text = Vec::new();
    let mut piece = [0u8; 4096];
    while !text.ends_with(b"x\n") {
        let n = timeout(BOUND, reader.read(&mut piece))
            .await
            .expect("within the bound")
            .expect("read");
        assert!(n > 0, "the stream ended early");
        text.extend_from_slice(&piece[..n]);
    }
    // The answer to the server's ping may come back as a line first.
    let text = String::from_utf8(text).expect("UTF-8");
    let text = text.replace("pong: are you there\n", "");
    assert_eq!(text, format!("NAME\n{}\n", "x".repeat(100_000)));
}

#[test]
fn other_transports_need_the_chat_protocol_and_tls_flags_need_tls() {
    let parse = |flags: &[&str]| {
        let mut all = vec!["chat_bench"];
        all.extend_from_slice(flags);
        Args::try_parse_from(all)
            .expect("the flags parse")
            .validate()
    };
    assert!(parse(&["--transport", "wss", "--proto", "nats"]).is_err());
    assert!(parse(&["--transport", "ws", "--tls-ca", "ca.pem"]).is_err());
    assert!(parse(&["--transport", "tcp", "--tls-name", "localhost"]).is_err());
    assert!(parse(&["--transport", "tls", "--tls-name", "localhost"]).is_ok());
}

// rcgen and base64 (for the PEM of `--tls-ca`) come with chatcore's
// `tls` and `websocket` features.
#[cfg(all(feature = "tls", feature = "websocket"))]
mod tls {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A self-signed certificate for localhost and 127.0.0.1: the server's
    /// configuration and the certificate's PEM.
    fn certificate() -> (Arc<rustls::ServerConfig>, String) {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("server config");
        (Arc::new(config), pem(made.cert.der()))
    }

    /// A certificate's PEM text.
    fn pem(der: &[u8]) -> String {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// Writes `pem` to a file of its own in the temporary directory.
    fn pem_file(pem: &str) -> std::path::PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("chat_bench-ca-{}-{n}.pem", std::process::id()));
        std::fs::write(&path, pem).expect("write the PEM file");
        path
    }

    #[tokio::test]
    async fn tls_carries_lines_and_accepts_a_self_signed_certificate_by_default() {
        let (config, _) = certificate();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let addr = server(Some(acceptor), echo_lines, echo_lines).await;
        let (mut reader, mut writer) = connect(&args(addr, "tls", &[])).await.expect("connect");
        writer.write_all(b"over tls\n").await.expect("write");
        let mut lb = LineBuf::new(8192);
        assert_eq!(
            line(&mut reader, &mut lb).await.as_deref(),
            Some("echo: over tls")
        );
    }

    #[tokio::test]
    async fn tls_ca_trusts_that_certificate_and_no_other() {
        let (config, pem) = certificate();
        let (_, other_pem) = certificate();
        let (path, other) = (pem_file(&pem), pem_file(&other_pem));

        let addr = server(Some(config.clone().into()), echo_lines, echo_lines).await;
        let ca = path.to_str().expect("a UTF-8 path");
        let (mut reader, mut writer) = connect(&args(addr, "tls", &["--tls-ca", ca]))
            .await
            .expect("connect");
        writer.write_all(b"trusted\n").await.expect("write");
        let mut lb = LineBuf::new(8192);
        assert_eq!(
            line(&mut reader, &mut lb).await.as_deref(),
            Some("echo: trusted")
        );

        let addr = server(Some(config.into()), echo_lines, echo_lines).await;
        let ca = other.to_str().expect("a UTF-8 path");
        let refused = connect(&args(addr, "tls", &["--tls-ca", ca])).await;
        let error = refused.err().expect("another certificate is refused");
        assert!(error.starts_with("TLS handshake"), "{error}");
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(other);
    }

    #[tokio::test]
    async fn wss_is_websocket_over_tls() {
        let (config, _) = certificate();
        let addr = server(Some(config.into()), websocket, websocket).await;
        let (mut reader, mut writer) = connect(&args(addr, "wss", &[])).await.expect("connect");
        let mut lb = LineBuf::new(8192);
        assert_eq!(line(&mut reader, &mut lb).await.as_deref(), Some("NAME"));
        writer.write_all(b"QUIT\n").await.expect("write");
        // The answer to the server's ping may come back as a line first.
        let mut rest = Vec::new();
        while let Some(line) = line(&mut reader, &mut lb).await {
            rest.push(line);
        }
        assert!(
            rest.is_empty() || rest == ["pong: are you there"],
            "{rest:?}"
        );
        assert_eq!(reader.close_code(), Some(1000));
    }
}
