//! A blocking chat client for tests, over any transport ([`Kind`]): lines
//! over TCP or TLS, or one text message per line over WebSocket (`ws`,
//! `wss`, a real client: tungstenite). Every wait is bounded by
//! [`TIMEOUT`]; anything the protocol does not allow fails the test.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Message, WebSocket};

use super::wire::{
    close_code, cut, next_line_of_bytes, next_message_of_chat, timed_out, Incoming, Stream, Wire,
};
use super::{Kind, Trust, TIMEOUT};

/// The path of the chat on the WebSocket ports (PROTOCOL.md).
pub const WS_PATH: &str = "/ws";

/// A chat client for tests, over any [`Kind`] of transport.
///
/// Over WebSocket a line is one text message without its `\n`; pings from
/// the server are answered (tungstenite queues the pong and sends it with
/// the next read or write), pongs are kept for [`Client::expect_pong`], and
/// the server's close frame is the end of the stream: its code is what
/// [`Client::expect_closed_code`] returns.
pub struct Client {
    pub name: String,
    kind: Kind,
    /// The TCP socket under the transport.
    socket: TcpStream,
    wire: Wire,
    /// The code of the server's close frame, once read (WebSocket only).
    close_code: Option<u16>,
    /// Pong payloads read while waiting for lines (WebSocket only).
    pongs: VecDeque<Vec<u8>>,
}

impl Client {
    /// A plain TCP client.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::connect_over(Kind::Tcp, addr, &Trust::default())
    }

    /// A client of `kind` to the listener at `addr` (over TLS, trusting
    /// the server as `trust` says). The WebSocket handshake to `/ws` is done
    /// here; nothing is read yet.
    pub fn connect_over(kind: Kind, addr: SocketAddr, trust: &Trust) -> Self {
        match Self::try_connect_over(kind, addr, trust, WS_PATH) {
            Ok(client) => client,
            Err(status) => panic!("{kind}: the WebSocket upgrade got HTTP {status}"),
        }
    }

    /// Like [`Client::connect_over`], with the WebSocket upgrade asked for
    /// `path`: an HTTP answer other than `101` is `Err` with its status.
    pub fn try_connect_over(
        kind: Kind,
        addr: SocketAddr,
        trust: &Trust,
        path: &str,
    ) -> Result<Self, u16> {
        let (socket, stream) = Stream::open(kind, addr, trust);
        let wire = if kind.is_websocket() {
            let scheme = if kind.is_tls() { "wss" } else { "ws" };
            let url = format!("{scheme}://{addr}{path}");
            match tungstenite::client(url.as_str(), stream) {
                Ok((ws, _response)) => Wire::WebSocket(Box::new(ws)),
                Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                    return Err(response.status().as_u16())
                }
                Err(e) => panic!("{kind}: WebSocket handshake with {url} failed: {e}"),
            }
        } else {
            Wire::Lines(BufReader::new(stream))
        };
        Ok(Client {
            name: String::new(),
            kind,
            socket,
            wire,
            close_code: None,
            pongs: VecDeque::new(),
        })
    }

    /// The transport this client speaks.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sends raw bytes: over TCP and TLS as they are; over WebSocket as one
    /// text frame holding exactly these bytes (UTF-8 or not: the server
    /// must judge them), which the server reads as one or more lines.
    pub fn send(&mut self, bytes: &[u8]) {
        match &mut self.wire {
            Wire::Lines(reader) => {
                let stream = reader.get_mut();
                stream.write_all(bytes).expect("send");
                stream.flush().expect("send");
            }
            Wire::WebSocket(_) => {
                let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
                self.send_message(Message::Frame(frame));
            }
        }
    }

    /// Sends the start of a line that does not end yet: over TCP and TLS
    /// the bytes as they are (no `\n`), over WebSocket the first fragment of
    /// a text message (no FIN). What the client sends next continues it:
    /// raw bytes over TCP and TLS, a continuation frame over WebSocket.
    pub fn send_unfinished(&mut self, bytes: &[u8]) {
        match &mut self.wire {
            Wire::Lines(_) => self.send(bytes),
            Wire::WebSocket(_) => {
                let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), false);
                self.send_message(Message::Frame(frame));
            }
        }
    }

    /// Sends one line: with `\n` over TCP and TLS, as one text message
    /// (without `\n`) over WebSocket.
    pub fn send_line(&mut self, line: &str) {
        match &mut self.wire {
            Wire::Lines(_) => self.send(format!("{line}\n").as_bytes()),
            Wire::WebSocket(_) => self.send_message(Message::text(line)),
        }
    }

    /// Sends a WebSocket message (or, with `Message::Frame`, any frame:
    /// binary, fragments, ...), masked as a client must. WebSocket only.
    pub fn send_message(&mut self, message: Message) {
        let name = self.name.clone();
        let ws = self.websocket("send_message");
        if let Err(e) = ws.send(message) {
            panic!("{name}: WebSocket send failed: {e}");
        }
    }

    /// Sends a ping with `payload`. WebSocket only.
    pub fn ping(&mut self, payload: &[u8]) {
        self.send_message(Message::Ping(payload.to_vec().into()));
    }

    /// Reads until a pong with `payload` arrives (pongs read earlier count);
    /// returns the lines read before it. WebSocket only.
    pub fn expect_pong(&mut self, payload: &[u8]) -> Vec<String> {
        let mut before = Vec::new();
        let pong = loop {
            if let Some(pong) = self.pongs.pop_front() {
                break pong;
            }
            match self.next_incoming() {
                Incoming::Line(line) => before.push(line),
                Incoming::Pong(pong) => break pong,
                Incoming::End => panic!("{}: the connection closed before the pong", self.name),
            }
        };
        assert_eq!(pong, payload, "{}: a pong with another payload", self.name);
        before
    }

    /// The next WebSocket message as it came, pings and pongs included.
    /// Fails the test on a timeout or a broken connection. WebSocket only.
    pub fn next_message(&mut self) -> Message {
        let name = self.name.clone();
        let ws = self.websocket("next_message");
        match ws.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => {
                panic!("{name}: no message within {TIMEOUT:?}")
            }
            Err(e) => panic!("{name}: WebSocket read failed: {e}"),
        }
    }

    /// The next line (without `\n`), or `None` at the end of the stream
    /// (over WebSocket: the server's close frame). Fails the test on a
    /// timeout, a `\r` or invalid UTF-8, a binary message, a stream that
    /// ends inside a line, or a TLS or WebSocket stream cut without its
    /// closing (`close_notify`, close frame).
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            match self.next_incoming() {
                Incoming::Line(line) => return Some(line),
                Incoming::Pong(pong) => self.pongs.push_back(pong),
                Incoming::End => return None,
            }
        }
    }

    /// The next line, pong or end of the stream.
    fn next_incoming(&mut self) -> Incoming {
        match &mut self.wire {
            Wire::Lines(reader) => match next_line_of_bytes(reader, &self.name) {
                Some(line) => Incoming::Line(line),
                None => Incoming::End,
            },
            Wire::WebSocket(ws) => next_message_of_chat(ws, &self.name, &mut self.close_code),
        }
    }

    /// The next line; fails the test at end of stream.
    pub fn line(&mut self) -> String {
        match self.next_line() {
            Some(line) => line,
            None => panic!("{}: connection closed, a line was expected", self.name),
        }
    }

    /// Reads the next line and checks it.
    pub fn expect(&mut self, expected: &str) {
        let line = self.line();
        assert_eq!(line, expected, "{}: unexpected line", self.name);
    }

    /// Reads lines until one equals `expected`; returns those before it.
    pub fn read_until(&mut self, expected: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if line == expected {
                return before;
            }
            before.push(line);
        }
    }

    /// Expects the server to close the connection (after no more lines).
    /// Over WebSocket that is a close frame of any code (see
    /// [`Client::expect_closed_with`]) and then the end of the TCP
    /// connection.
    pub fn expect_closed(&mut self) {
        self.expect_closed_code();
    }

    /// [`Client::expect_closed`], returning the code of the server's close
    /// frame over WebSocket (`None` over TCP and TLS).
    pub fn expect_closed_code(&mut self) -> Option<u16> {
        if let Some(line) = self.next_line() {
            panic!("{}: expected the end of stream, got {line:?}", self.name);
        }
        self.expect_connection_end();
        self.close_code
    }

    /// Reads every line up to the end of the stream and returns them, then
    /// checks the end as [`Client::expect_closed`] does; the close code is
    /// then in [`Client::close_code`].
    pub fn read_until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line() {
            lines.push(line);
        }
        self.expect_connection_end();
        lines
    }

    /// After a WebSocket close frame, the next read sends the client's
    /// reply and must find the end of the TCP stream.
    fn expect_connection_end(&mut self) {
        if let Wire::WebSocket(ws) = &mut self.wire {
            match ws.read() {
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {}
                Err(tungstenite::Error::Io(e)) if timed_out(&e) => panic!(
                    "{}: the server kept the connection open after its close frame",
                    self.name
                ),
                other => panic!(
                    "{}: expected the end of the connection after the close frame, got {other:?}",
                    self.name
                ),
            }
        }
    }

    /// [`Client::expect_closed`], and over WebSocket the close code must be
    /// `code` (1000 after `QUIT`, 1001 at shutdown, 1013 when full, 1008 for
    /// a name timeout or a slow consumer, 1003 and 1007 for bad messages).
    pub fn expect_closed_with(&mut self, code: u16) {
        let got = self.expect_closed_code();
        if self.kind.is_websocket() {
            assert_eq!(got, Some(code), "{}: the close code", self.name);
        }
    }

    /// The code of the server's close frame, once read (WebSocket only).
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Expects the connection to have been cut (a slow consumer): reads
    /// what remains up to the end of the stream, which may come cleanly or
    /// as a reset, and returns it (over WebSocket: each text message and a
    /// `\n`; a close frame's code is kept for [`Client::close_code`]). Fails
    /// the test on a timeout.
    pub fn read_until_cut(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match &mut self.wire {
            Wire::Lines(reader) => match reader.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) if cut(&e) => {}
                Err(e) => panic!("{}: expected the connection to be cut: {e}", self.name),
            },
            Wire::WebSocket(ws) => loop {
                match ws.read() {
                    Ok(Message::Text(text)) => {
                        rest.extend_from_slice(text.as_bytes());
                        rest.push(b'\n');
                    }
                    Ok(Message::Close(frame)) => self.close_code = Some(close_code(frame)),
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if cut(&e) => break,
                    Err(
                        tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                        | tungstenite::Error::Protocol(_),
                    ) => break,
                    Err(e) => panic!("{}: expected the connection to be cut: {e}", self.name),
                }
            },
        }
        rest
    }

    /// Proves that nothing arrived before now: whispers a token to itself
    /// and expects that to be the very next line.
    pub fn expect_nothing_pending(&mut self) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let token = format!("sync-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.send_line(&format!("\\w {} {token}", self.name));
        self.expect(&format!("priv({}): {token}", self.name));
    }

    /// Ends this client's input, as its transport does: a TCP half-close;
    /// over TLS a `close_notify` first; over WebSocket a close frame (1000)
    /// and the TCP connection left open for the server's answer. Reading
    /// still works.
    pub fn shutdown_write(&mut self) {
        match &mut self.wire {
            Wire::Lines(reader) => reader.get_mut().end_output(),
            Wire::WebSocket(ws) => {
                let frame = CloseFrame {
                    code: 1000.into(),
                    reason: "".into(),
                };
                ws.close(Some(frame)).expect("send the close frame");
                ws.flush().expect("send the close frame");
            }
        }
    }

    /// Half-closes the TCP socket under any transport, with no TLS or
    /// WebSocket closing first (an abrupt end of input).
    pub fn shutdown_socket_write(&self) {
        self.socket.shutdown(Direction::Write).expect("shutdown");
    }

    /// The TCP socket under the transport.
    pub fn stream(&self) -> &TcpStream {
        &self.socket
    }

    fn websocket(&mut self, what: &str) -> &mut WebSocket<Stream> {
        match &mut self.wire {
            Wire::WebSocket(ws) => ws,
            Wire::Lines(_) => panic!("{what} is for WebSocket clients, not {}", self.kind),
        }
    }
}
