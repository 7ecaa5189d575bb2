//! What is under a test [`Client`](super::Client): the stream (TCP, or
//! TLS over it), and reading lines from bytes or WebSocket messages.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};

use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::{Kind, Trust, TIMEOUT};

/// The bytes under the client's protocol: a TCP socket, or TLS over one.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// Opens `kind`'s stream to `addr`: TCP, then the TLS handshake (done
    /// lazily by the first read or write) for `tls` and `wss`.
    pub fn open(kind: Kind, addr: SocketAddr, trust: &Trust) -> (TcpStream, Stream) {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        tcp.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
        let socket = tcp.try_clone().expect("clone");
        if !kind.is_tls() {
            return (socket, Stream::Tcp(tcp));
        }
        #[cfg(feature = "tls")]
        {
            let config = trust
                .config()
                .expect("a TLS client needs the server's certificate");
            let name = rustls::pki_types::ServerName::from(addr.ip());
            let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
            (
                socket,
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
            )
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = trust;
            panic!("{kind} needs chatcore's `tls` feature");
        }
    }

    /// Ends the output: TLS sends its `close_notify` first; then the TCP
    /// write side is shut.
    pub fn end_output(&mut self) {
        match self {
            Stream::Tcp(tcp) => tcp.shutdown(Direction::Write).expect("shutdown"),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                tls.conn.send_close_notify();
                tls.flush().expect("send close_notify");
                tls.sock.shutdown(Direction::Write).expect("shutdown");
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Lines as bytes (TCP, TLS), or WebSocket messages.
pub enum Wire {
    Lines(BufReader<Stream>),
    WebSocket(Box<WebSocket<Stream>>),
}
/// A line from a byte stream (TCP, TLS).
pub fn next_line_of_bytes(reader: &mut BufReader<Stream>, name: &str) -> Option<String> {
    let mut bytes = Vec::new();
    match reader.read_until(b'\n', &mut bytes) {
        Ok(0) => None,
        Ok(_) => {
            assert_eq!(
                bytes.pop(),
                Some(b'\n'),
                "{name}: stream ended inside a line: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(!bytes.contains(&b'\r'), "the server sent a \\r");
            Some(String::from_utf8(bytes).expect("server lines are UTF-8"))
        }
        Err(e) if timed_out(&e) => panic!("{name}: no line within {TIMEOUT:?}"),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            panic!("{name}: the TLS stream ended without close_notify")
        }
        // The protocol promises a clean close (every line, then FIN)
        // wherever a test reads to the end: a reset would mean lines the
        // client never got. Only a cut slow consumer may see one
        // (`read_until_cut`).
        Err(e) => panic!("{name}: read failed: {e}"),
    }
}

/// What a chat client reads next: a line, a pong, or the end.
pub enum Incoming {
    Line(String),
    Pong(Vec<u8>),
    End,
}

/// The next line (a text message), pong or end (the close frame) of a
/// WebSocket chat connection.
pub fn next_message_of_chat(
    ws: &mut WebSocket<Stream>,
    name: &str,
    close: &mut Option<u16>,
) -> Incoming {
    if close.is_some() {
        return Incoming::End;
    }
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                let line = text.as_str();
                assert!(
                    !line.contains('\n'),
                    "{name}: a message held a \\n: {line:?}"
                );
                assert!(!line.contains('\r'), "{name}: the server sent a \\r");
                return Incoming::Line(line.to_owned());
            }
            Ok(Message::Close(frame)) => {
                *close = Some(close_code(frame));
                return Incoming::End;
            }
            Ok(Message::Pong(payload)) => return Incoming::Pong(payload.to_vec()),
            // Answered by tungstenite with the next read or write.
            Ok(Message::Ping(_)) => {}
            Ok(Message::Binary(data)) => {
                panic!(
                    "{name}: the server sent a binary message ({} bytes)",
                    data.len()
                )
            }
            Ok(Message::Frame(_)) => unreachable!("tungstenite never reads a raw frame"),
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => {
                panic!("{name}: no line within {TIMEOUT:?}")
            }
            Err(e) => panic!("{name}: the WebSocket connection failed (no close frame?): {e}"),
        }
    }
}

/// A close frame's code; 1005 ("no status") for a close frame without one.
pub fn close_code(frame: Option<CloseFrame>) -> u16 {
    frame.map_or(1005, |f| u16::from(f.code))
}

pub fn timed_out(e: &io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut
}

/// A connection cut by the server: a reset, TLS ended without
/// `close_notify`, or (a WebSocket client answering the server's close
/// frame) a write to a connection the server has closed.
pub fn cut(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
    )
}
