//! Each transport against a small local server on 127.0.0.1 port 0, on a
//! thread of its own: a line echo over TCP or TLS, and a tungstenite
//! WebSocket server (over TCP or TLS) that answers text messages; and the
//! frame codec on its own, fed one byte at a time.

use super::*;
use crate::linebuf::LineBuf;
use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::Message;

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

/// The next line the client reads, without its `\n`; `None` at the end.
async fn line<R: AsyncRead + Unpin>(reader: &mut R, lb: &mut LineBuf) -> Option<String> {
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

trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A server of one connection on its own thread: TCP, or TLS with `tls`.
fn server(tls: Option<Arc<rustls::ServerConfig>>, serve: fn(Box<dyn Duplex>)) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(BOUND)).expect("timeout");
        match tls {
            None => serve(Box::new(tcp)),
            Some(config) => {
                let conn = rustls::ServerConnection::new(config).expect("TLS server");
                serve(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        }
    });
    addr
}

/// Line echo: each line back as `echo: <line>`.
fn echo_lines(stream: Box<dyn Duplex>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    while let Ok(n @ 1..) = stream.read_line(&mut line) {
        let reply = format!("echo: {}\n", line[..n].trim_end());
        line.clear();
        let out = stream.get_mut();
        if out.write_all(reply.as_bytes()).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// A WebSocket stand-in for the chat (tungstenite): a ping, then `NAME`;
/// `QUIT` gets a close frame (1000), `long` 100,000 bytes, `fragments`
/// one message in three frames, `binary` a binary message; any other text
/// `echo: <text>`.
fn websocket(stream: Box<dyn Duplex>) {
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    let _ = ws.send(Message::Ping(b"ping".to_vec().into()));
    let _ = ws.send(Message::text("NAME"));
    while let Ok(message) = ws.read() {
        let Message::Text(text) = message else {
            continue;
        };
        let sent = match text.as_str() {
            "QUIT" => {
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(Some(close));
                while ws.read().is_ok() {}
                return;
            }
            "long" => ws.send(Message::text("x".repeat(100_000))),
            "binary" => ws.send(Message::binary(b"bytes".to_vec())),
            "fragments" => {
                let parts = [
                    Frame::message(b"one ".to_vec(), OpCode::Data(Data::Text), false),
                    Frame::message(b"message".to_vec(), OpCode::Data(Data::Continue), false),
                    Frame::message(b"!".to_vec(), OpCode::Data(Data::Continue), true),
                ];
                parts
                    .into_iter()
                    .try_for_each(|f| ws.send(Message::Frame(f)))
            }
            other => ws.send(Message::text(format!("echo: {other}"))),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn tcp_carries_lines_as_they_are() {
    let addr = server(None, echo_lines);
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
    let addr = server(None, websocket);
    let (mut reader, mut writer) = connect(&args(addr, "ws", &[])).await.expect("connect");
    let mut lb = LineBuf::new(8192);
    // The ping before it is skipped.
    assert_eq!(line(&mut reader, &mut lb).await.as_deref(), Some("NAME"));
    writer
        .write_all(b"ana\nhello there\nfragments\n")
        .await
        .expect("write");
    assert_eq!(
        line(&mut reader, &mut lb).await.as_deref(),
        Some("echo: ana")
    );
    let hello = line(&mut reader, &mut lb).await;
    assert_eq!(hello.as_deref(), Some("echo: hello there"));
    let fragments = line(&mut reader, &mut lb).await;
    assert_eq!(fragments.as_deref(), Some("one message!"));
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
    let addr = server(None, websocket);
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
    let text = String::from_utf8(text).expect("UTF-8");
    assert_eq!(text, format!("NAME\n{}\n", "x".repeat(100_000)));
}

#[tokio::test]
async fn a_binary_message_is_an_error() {
    let addr = server(None, websocket);
    let (mut reader, mut writer) = connect(&args(addr, "ws", &[])).await.expect("connect");
    let mut lb = LineBuf::new(8192);
    assert_eq!(line(&mut reader, &mut lb).await.as_deref(), Some("NAME"));
    writer.write_all(b"binary\n").await.expect("write");
    let error = timeout(BOUND, lb.fill(&mut reader))
        .await
        .expect("within the bound")
        .expect_err("a binary message");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
}

/// Yields what it holds one byte per read.
struct ByteByByte(Vec<u8>, usize);

impl AsyncRead for ByteByByte {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(&byte) = self.0.get(self.1) {
            buf.put_slice(&[byte]);
            self.1 += 1;
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn frames_split_anywhere_decode_to_the_same_lines() {
    let long = "y".repeat(70_000);
    let mut frames = Vec::new();
    frames.extend_from_slice(&[0x89, 0x02, b'h', b'i']); // ping
    frames.extend_from_slice(&[0x81, 0x01, b'a']);
    frames.extend_from_slice(&[0x01, 0x01, b'b', 0x00, 0x00, 0x80, 0x01, b'c']);
    frames.extend_from_slice(&[0x8a, 0x00]); // pong
    frames.extend_from_slice(&[0x81, 126, 0x01, 0x2c]);
    frames.extend_from_slice(&[b'z'; 300]);
    frames.extend_from_slice(&[0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    frames.extend_from_slice(long.as_bytes());
    frames.extend_from_slice(&[0x81, 0x00]); // an empty line
    frames.extend_from_slice(&[0x88, 0x02, 0x03, 0xe9]); // close, 1001
    let mut reader = WsReader::new(ByteByByte(frames, 0), 256);
    // ByteByByte never waits: reading to the end is bounded.
    let mut text = Vec::new();
    reader.read_to_end(&mut text).await.expect("read");
    let text = String::from_utf8(text).expect("UTF-8");
    assert_eq!(text, format!("a\nbc\n{}\n{long}\n\n", "z".repeat(300)));
    assert_eq!(reader.close_code, Some(1001));
}

#[tokio::test]
async fn a_masked_frame_from_the_server_is_an_error() {
    let frames = vec![0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1];
    let mut reader = WsReader::new(ByteByByte(frames, 0), 256);
    let error = reader.read(&mut [0u8; 64]).await.expect_err("masked");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn text_frames_are_masked_as_rfc_6455_shows() {
    // RFC 6455, section 5.7: a masked "Hello".
    let mut out = Vec::new();
    ws::put_text_frame(&mut out, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
    let expected = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(out, expected);
    out.clear();
    ws::put_text_frame(&mut out, &[b'q'; 300], [0; 4]);
    assert_eq!(out[..4], [0x81, 0x80 | 126, 0x01, 0x2c]);
    assert_eq!(out.len(), 4 + 4 + 300);
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
mod tls;
