//! Raw connections below the chat, for what a chat client cannot do: bytes
//! that are not TLS on a TLS port, HTTP requests on a WebSocket port.

#[cfg(feature = "tls")]
use std::io::Write;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};

#[cfg(feature = "tls")]
use super::wire::Stream;
use super::TIMEOUT;
#[cfg(feature = "tls")]
use super::{Kind, TestServer};

/// A raw TCP connection to `addr`, every wait bounded by [`TIMEOUT`].
pub fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

/// A connection to a WebSocket port below the HTTP: raw TCP for `ws`, TLS
/// (handshake done) for `wss`.
#[cfg(feature = "tls")]
pub fn http_stream(server: &TestServer, kind: Kind) -> Stream {
    let (_, mut stream) = Stream::open(kind, server.addr_for(kind), server.trust());
    if let Stream::Tls(tls) = &mut stream {
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("the TLS handshake");
        }
    }
    stream
}

/// Everything up to the end of the stream; a reset, or TLS ended without
/// `close_notify`, counts as the end. Fails after [`TIMEOUT`].
pub fn read_to_end(stream: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server did not close within {TIMEOUT:?} (got {got:?})")
            }
            Err(_) => return got,
        }
    }
}

/// Sends `request` on a new HTTP connection to `kind`'s port and returns
/// the whole answer, up to the server's close.
#[cfg(feature = "tls")]
pub fn http(server: &TestServer, kind: Kind, request: &[u8]) -> String {
    let mut stream = http_stream(server, kind);
    stream.write_all(request).expect("send the request");
    stream.flush().expect("send the request");
    let answer = read_to_end(&mut stream);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of an HTTP answer.
pub fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {answer:?}"))
}
