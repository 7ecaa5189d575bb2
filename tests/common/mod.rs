//! Shared harness for the integration tests: a server on 127.0.0.1 port 0
//! in this process, and chat clients whose every wait is bounded, over
//! each transport ([`Kind`]): lines over TCP or TLS, WebSocket, WebSocket
//! over TLS.
//!
//! A test runs over every transport the way it runs over both drivers, on
//! a new server (a listener per transport) each time; a failure names its
//! I/O mode and transport:
//!
//! ```ignore
//! each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
//!     let mut ana = server.join_over(kind, "ana");
//!     ana.send_line("QUIT");
//!     ana.expect_closed_with(1000);
//! });
//! ```
//!
//! [`LINE_TRANSPORTS`] is for what only a byte stream has (raw bytes, lines
//! split across writes, invalid UTF-8 kept open); [`WEBSOCKET_TRANSPORTS`]
//! for close codes, pings and frames.
#![allow(dead_code)]

pub mod client;
mod listeners;
pub mod raw;
pub mod trust;
pub mod wire;

use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chatcore::{ChatRoom, Server, ServerConfig, ServerError, Shutdown, TcpTransport};
use socket2::{Domain, Socket, Type};

pub use client::Client;
pub use trust::Trust;

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

/// A transport a client speaks and a server listens on (PROTOCOL.md,
/// "Transports").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Lines over TCP.
    Tcp,
    /// Lines over TLS.
    Tls,
    /// WebSocket: one text message per line.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Kind {
    /// The name PROTOCOL.md and `chat_bench --transport` use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }

    /// Whether TLS is under the chat (`tls`, `wss`).
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::Wss)
    }

    /// Whether lines travel as WebSocket messages (`ws`, `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Kind::Ws | Kind::Wss)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every transport this build serves; a test that holds over TCP runs over
/// all of them, the way it runs over [`IO_MODES`].
pub const TRANSPORTS: &[Kind] = &[
    Kind::Tcp,
    #[cfg(feature = "tls")]
    Kind::Tls,
    #[cfg(feature = "websocket")]
    Kind::Ws,
    #[cfg(all(feature = "tls", feature = "websocket"))]
    Kind::Wss,
];

/// The transports whose lines are a byte stream (`\n`-terminated), where
/// raw bytes, split lines and half-closes mean what they mean over TCP.
pub const LINE_TRANSPORTS: &[Kind] = &[
    Kind::Tcp,
    #[cfg(feature = "tls")]
    Kind::Tls,
];

/// The WebSocket transports, for close codes, pings and frames.
pub const WEBSOCKET_TRANSPORTS: &[Kind] = &[
    #[cfg(feature = "websocket")]
    Kind::Ws,
    #[cfg(all(feature = "tls", feature = "websocket"))]
    Kind::Wss,
];

/// A server running on its own thread, stopped on drop.
///
/// [`TestServer::start`] and its siblings listen on TCP only;
/// [`TestServer::with_transports`] also on TLS, WS and WSS (one server, a
/// listener per transport: see `listeners.rs`).
pub struct TestServer {
    /// The TCP listener's address.
    pub addr: SocketAddr,
    pub room: Arc<ChatRoom>,
    /// Every listener, TCP first.
    listeners: Vec<(Kind, SocketAddr)>,
    /// How TLS clients trust this server.
    trust: Trust,
    shutdown: Shutdown,
    /// What `run` returned; `None` once stopped.
    stopped: Option<mpsc::Receiver<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server with default limits.
    pub fn start(io: Io) -> Self {
        Self::with_config(io, ServerConfig::default())
    }

    /// Starts a server with the given limits on 127.0.0.1, port 0.
    pub fn with_config(io: Io, config: ServerConfig) -> Self {
        Self::run(Server::new(bind_tcp(), config), io)
    }

    /// Starts a server with `loops` event loops (one makes the order of a
    /// loop's work independent of thread scheduling).
    pub fn with_event_loops(loops: usize, config: ServerConfig) -> Self {
        Self::spawn(Server::new(bind_tcp(), config), move |server| {
            server.run_event_loops(loops)
        })
    }

    /// Runs `server` on its own thread, on `io`.
    fn run(server: Server<TcpTransport>, io: Io) -> Self {
        Self::spawn(server, move |server| match io {
            Io::Threads => server.run(),
            Io::Events => server.run_event_loops(2),
        })
    }

    /// Runs `server` on its own thread with `run`; it stops with this test
    /// server.
    fn spawn(
        server: Server<TcpTransport>,
        run: impl FnOnce(Server<TcpTransport>) -> Result<(), ServerError> + Send + 'static,
    ) -> Self {
        let addr = server.transport().local_addr();
        let room = server.room().clone();
        let shutdown = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(run(server));
        });
        TestServer {
            addr,
            room,
            listeners: vec![(Kind::Tcp, addr)],
            trust: Trust::default(),
            shutdown,
            stopped: Some(rx),
        }
    }

    /// The address of the listener for `kind`; fails the test if this
    /// server has none.
    pub fn addr_for(&self, kind: Kind) -> SocketAddr {
        match self.listeners.iter().find(|(k, _)| *k == kind) {
            Some((_, addr)) => *addr,
            None => {
                panic!("this test server has no {kind} listener (see TestServer::with_transports)")
            }
        }
    }

    /// The transports this server listens on, TCP first.
    pub fn kinds(&self) -> Vec<Kind> {
        self.listeners.iter().map(|(k, _)| *k).collect()
    }

    /// How a TLS client trusts this server (its certificate, pinned).
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// A raw TCP connection (the server's `NAME` is not read yet).
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A raw connection over `kind` (the TLS and WebSocket handshakes are
    /// done; `NAME` is not read yet).
    pub fn connect_over(&self, kind: Kind) -> Client {
        Client::connect_over(kind, self.addr_for(kind), &self.trust)
    }

    /// A TCP member who has joined as `name`; its own welcome and join
    /// lines are read.
    pub fn join(&self, name: &str) -> Client {
        self.join_over(Kind::Tcp, name)
    }

    /// A member over `kind` who has joined as `name`; its own welcome and
    /// join lines are read.
    pub fn join_over(&self, kind: Kind, name: &str) -> Client {
        let mut client = self.connect_over(kind);
        client.name = format!("{name} ({kind})");
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
        self.trigger_shutdown();
        let stopped = self.stopped.take().expect("server already stopped");
        stopped
            .recv_timeout(TIMEOUT)
            .expect("the server did not stop within the timeout")
    }

    /// Waits until the room has `n` members.
    pub fn wait_members(&self, n: usize) {
        wait_until(|| self.room.len() == n, "room size");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(TIMEOUT);
        }
    }
}

/// A TCP listener on 127.0.0.1, port 0.
fn bind_tcp() -> TcpTransport {
    TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Runs `test` once for each I/O mode and each transport of `kinds`, each
/// time on a new server with every listener
/// ([`TestServer::with_transports`]) and `config`; a failure names its case.
pub fn each_transport(
    kinds: &[Kind],
    config: ServerConfig,
    mut test: impl FnMut(TestServer, Kind),
) {
    for &io in IO_MODES {
        for &kind in kinds {
            let _case = Case::new(format!("{io:?}, over {kind}"));
            test(TestServer::with_transports(io, config.clone()), kind);
        }
    }
}

/// Names the case a test is running: when the test fails while this is
/// alive, the case is printed with the failure (the test's captured output).
pub struct Case(String);

impl Case {
    pub fn new(case: impl Into<String>) -> Self {
        Case(case.into())
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("the test failed in the case: {}", self.0);
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

/// Connects a member that will never read, and sends its name (the
/// server's lines are never read). Its small receive buffer and segments
/// keep what the kernels hold for it small too: the server's writes to it
/// stall almost at once.
pub fn connect_never_reading(addr: SocketAddr, name: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    #[cfg(unix)]
    socket.set_tcp_mss(1024).expect("TCP_MAXSEG");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(format!("{name}\n").as_bytes())
        .expect("send the name");
    stream
}
