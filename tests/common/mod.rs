//! Shared harness for the integration tests: a server on 127.0.0.1 port 0
//! in this process, and line-oriented TCP clients whose every wait is
//! bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chatcore::{ChatRoom, Server, ServerConfig, ServerError, Shutdown, TcpTransport};

/// The longest any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How the server drives its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// A reader and a writer thread per connection.
    Threads,
    /// Event loops over non-blocking sockets (two loops, as on 2 cores).
    Events,
}

/// Every I/O mode; each protocol test runs over all of them.
pub const IO_MODES: &[Io] = &[Io::Threads, Io::Events];

/// A server running on its own thread, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub room: Arc<ChatRoom>,
    shutdown: Shutdown,
    stopped: Option<mpsc::Receiver<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server with default limits.
    pub fn start(io: Io) -> Self {
        Self::with_config(io, ServerConfig::default())
    }

    /// Starts a server with the given limits on 127.0.0.1, port 0.
    pub fn with_config(io: Io, config: ServerConfig) -> Self {
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = transport.local_addr();
        let server = Server::new(transport, config);
        let room = server.room().clone();
        let shutdown = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let result = match io {
                Io::Threads => server.run(),
                Io::Events => server.run_event_loops(2),
            };
            let _ = tx.send(result);
        });
        TestServer {
            addr,
            room,
            shutdown,
            stopped: Some(rx),
        }
    }

    /// A raw connection (the server's `NAME` is not read yet).
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A member who has joined as `name`; its own welcome and join lines
    /// are read.
    pub fn join(&self, name: &str) -> Client {
        let mut client = self.connect();
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        client.expect(&format!("{name} has joined the chat."));
        client.name = name.to_owned();
        client
    }

    /// Begins the shutdown without waiting for it.
    pub fn trigger_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Shuts the server down and waits (bounded) for `run` to return.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.shutdown.trigger();
        let rx = self.stopped.take().expect("server already stopped");
        rx.recv_timeout(TIMEOUT)
            .expect("the server did not stop within the timeout")
    }

    /// Waits until the room has `n` members.
    pub fn wait_members(&self, n: usize) {
        wait_until(|| self.room.len() == n, "room size");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(rx) = self.stopped.take() {
            let _ = rx.recv_timeout(TIMEOUT);
        }
    }
}

/// Polls `condition` until it holds, failing the test after [`TIMEOUT`].
/// For state that has no event to wait on (a room's size, a count).
pub fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
        thread::park_timeout(Duration::from_millis(2));
    }
}

/// A TCP chat client for tests.
pub struct Client {
    pub name: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client {
            name: String::new(),
            stream,
            reader,
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends one line, adding `\n`.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// The next line (without `\n`), or `None` at end of stream. Fails the
    /// test on timeout, on a `\r` or on invalid UTF-8.
    pub fn next_line(&mut self) -> Option<String> {
        let mut bytes = Vec::new();
        match self.reader.read_until(b'\n', &mut bytes) {
            Ok(0) => None,
            Ok(_) => {
                assert_eq!(
                    bytes.pop(),
                    Some(b'\n'),
                    "{}: stream ended inside a line: {:?}",
                    self.name,
                    String::from_utf8_lossy(&bytes)
                );
                assert!(!bytes.contains(&b'\r'), "the server sent a \\r");
                Some(String::from_utf8(bytes).expect("server lines are UTF-8"))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("{}: no line within {TIMEOUT:?}", self.name)
            }
            // The protocol promises a clean close (every line, then FIN)
            // wherever a test reads to the end: a reset would mean lines the
            // client never got. Only a cut slow consumer may see one
            // (`expect_cut`).
            Err(e) => panic!("{}: read failed: {e}", self.name),
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
    pub fn expect_closed(&mut self) {
        if let Some(line) = self.next_line() {
            panic!("{}: expected the end of stream, got {line:?}", self.name);
        }
    }

    /// Expects the connection to have been cut (a slow consumer): reads
    /// what remains up to the end of the stream, which may come cleanly or
    /// as a reset, and returns it. Fails the test on a timeout.
    pub fn read_until_cut(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{}: expected the connection to be cut: {e}", self.name),
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

    /// Ends this client's input (a half-close); reading still works.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Direction::Write).expect("shutdown");
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}
