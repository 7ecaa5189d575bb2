//! The protocol over the in-memory transport: no sockets at all. A server
//! runs on its own thread over `MemoryTransport`; clients are
//! `MemoryClient`s driven through a small line reader.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chatcore::transport::{MemoryClient, MemoryConnector};
use chatcore::{ChatRoom, MemoryTransport, Server, ServerConfig, ServerError, Shutdown};

/// The longest any single wait may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);
const LAST: &str = "Server is shutting down.";

/// A server over a memory transport, on its own thread; stopped on drop.
struct MemServer {
    connector: MemoryConnector,
    room: Arc<ChatRoom>,
    shutdown: Shutdown,
    stopped: Option<mpsc::Receiver<Result<(), ServerError>>>,
}

impl MemServer {
    fn start(config: ServerConfig) -> Self {
        Self::with_pipes(MemoryTransport::new(), config)
    }

    fn with_pipe_capacity(capacity: usize, config: ServerConfig) -> Self {
        Self::with_pipes(MemoryTransport::with_pipe_capacity(capacity), config)
    }

    fn with_pipes(
        (transport, connector): (MemoryTransport, MemoryConnector),
        config: ServerConfig,
    ) -> Self {
        let server = Server::new(transport, config);
        let room = server.room().clone();
        let shutdown = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server.run());
        });
        MemServer {
            connector,
            room,
            shutdown,
            stopped: Some(rx),
        }
    }

    /// A raw connection (`NAME` not read yet).
    fn connect(&self) -> Line {
        Line::new(self.connector.connect())
    }

    /// A member who joined as `name`, its welcome and join lines read.
    fn join(&self, name: &str) -> Line {
        let mut client = self.connect();
        client.name = name.to_owned();
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        client.expect(&format!("{name} has joined the chat."));
        client
    }

    /// Shuts down and waits (bounded) for `run` to return.
    fn stop(&mut self) -> Result<(), ServerError> {
        self.shutdown.trigger();
        let rx = self.stopped.take().expect("server already stopped");
        rx.recv_timeout(TIMEOUT)
            .expect("the server did not stop within the timeout")
    }

    fn wait_members(&self, n: usize) {
        wait_until(|| self.room.len() == n, "room size");
    }
}

impl Drop for MemServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(rx) = self.stopped.take() {
            let _ = rx.recv_timeout(TIMEOUT);
        }
    }
}

/// Polls `condition` until it holds, failing after [`TIMEOUT`].
fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::park_timeout(Duration::from_millis(2));
    }
}

/// A line-oriented memory client whose every read is bounded.
struct Line {
    name: String,
    inner: BufReader<MemoryClient>,
}

impl Line {
    fn new(mut client: MemoryClient) -> Self {
        client.set_read_timeout(Some(TIMEOUT));
        client.set_write_timeout(Some(TIMEOUT));
        Line {
            name: String::new(),
            inner: BufReader::new(client),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.inner.get_mut().write_all(bytes).expect("send");
    }

    fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// The next line, or `None` at end of stream.
    fn next_line(&mut self) -> Option<String> {
        let mut bytes = Vec::new();
        match self.inner.read_until(b'\n', &mut bytes) {
            Ok(0) => None,
            Ok(_) => {
                assert_eq!(
                    bytes.pop(),
                    Some(b'\n'),
                    "{}: stream ended inside a line",
                    self.name
                );
                assert!(
                    !bytes.contains(&b'\r'),
                    "{}: the server sent a \\r",
                    self.name
                );
                Some(String::from_utf8(bytes).expect("server lines are UTF-8"))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{}: no line within {TIMEOUT:?}", self.name)
            }
            Err(e) => panic!("{}: read failed: {e}", self.name),
        }
    }

    fn line(&mut self) -> String {
        match self.next_line() {
            Some(line) => line,
            None => panic!("{}: connection closed, a line was expected", self.name),
        }
    }

    fn expect(&mut self, expected: &str) {
        let line = self.line();
        assert_eq!(line, expected, "{}: unexpected line", self.name);
    }

    fn expect_closed(&mut self) {
        if let Some(line) = self.next_line() {
            panic!("{}: expected the end of stream, got {line:?}", self.name);
        }
    }

    /// Proves nothing arrived before now: a whisper to itself must be the
    /// very next line.
    fn expect_nothing_pending(&mut self) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let token = format!("sync-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.send_line(&format!("\\w {} {token}", self.name));
        self.expect(&format!("priv({}): {token}", self.name));
    }

    /// Ends this client's input (a half-close); reading still works.
    fn shutdown_write(&self) {
        self.inner.get_ref().shutdown_write();
    }

    /// Everything until end of stream; fails on timeout.
    fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.inner.read_to_end(&mut rest).expect("read to the end");
        rest
    }
}

#[test]
fn memory_three_members_chat_and_whisper() {
    let server = MemServer::start(ServerConfig::default());
    let mut ana = server.join("ana");
    let mut bob = server.join("bob");
    ana.expect("bob has joined the chat.");
    let mut cy = server.join("cy");
    ana.expect("cy has joined the chat.");
    bob.expect("cy has joined the chat.");

    ana.send_line("hello  all ");
    for client in [&mut ana, &mut bob, &mut cy] {
        client.expect("ana: hello  all ");
    }
    bob.send_line("\\w CY psst");
    cy.expect("priv(bob): psst");
    bob.send_line("\\w dan hi");
    bob.expect("User 'dan' not found.");
    bob.send_line("\\w cy");
    bob.expect("Usage: \\w <name> <message>");
    cy.send_line("\\list");
    cy.expect("Users online (3): ana, bob, cy");
    for client in [&mut ana, &mut bob, &mut cy] {
        client.expect_nothing_pending();
    }
}

#[test]
fn memory_quit_closes_the_quitter_and_others_get_one_leave_notice() {
    let server = MemServer::start(ServerConfig::default());
    let mut ana = server.join("ana");
    let mut bob = server.join("bob");
    ana.expect("bob has joined the chat.");

    ana.send_line("bye");
    ana.send_line("QUIT");
    ana.expect("ana: bye");
    ana.expect_closed();
    bob.expect("ana: bye");
    bob.expect("ana has left the chat.");
    bob.expect_nothing_pending();
    bob.send_line("\\w ana still there?");
    bob.expect("User 'ana' not found.");
    let mut again = server.join("ana");
    bob.expect("ana has joined the chat.");
    again.expect_nothing_pending();
}

#[test]
fn memory_half_close_leaves_once_and_closes_the_connection() {
    let server = MemServer::start(ServerConfig::default());
    let mut ana = server.join("ana");
    let mut bob = server.join("bob");
    ana.expect("bob has joined the chat.");

    bob.send(b"last words\nunfinished");
    bob.shutdown_write();
    bob.expect("bob: last words");
    bob.expect_closed();
    ana.expect("bob: last words");
    ana.expect("bob has left the chat.");
    ana.expect_nothing_pending();
    server.wait_members(1);
}

#[test]
fn memory_dropped_client_in_the_handshake_is_dropped_silently() {
    let server = MemServer::start(ServerConfig::default());
    let mut ana = server.join("ana");
    let mut pending = server.connect();
    pending.expect("NAME");
    pending.send(b"half a na");
    drop(pending);
    ana.expect_nothing_pending();
    assert_eq!(server.room.len(), 1);
}

#[test]
fn memory_server_full_counts_connections_in_the_handshake() {
    let server = MemServer::start(ServerConfig::default().max_clients(2));
    let ana = server.join("ana");
    let mut pending = server.connect();
    pending.expect("NAME");
    let mut third = server.connect();
    third.expect("Server is full.");
    third.expect_closed();

    drop(ana);
    let deadline = Instant::now() + TIMEOUT;
    let mut late = loop {
        let mut client = server.connect();
        match client.next_line().as_deref() {
            Some("NAME") => break client,
            Some("Server is full.") => client.expect_closed(),
            other => panic!("expected NAME or Server is full., got {other:?}"),
        }
        assert!(Instant::now() < deadline, "no slot freed");
    };
    late.name = "late".to_owned();
    late.send_line("late");
    late.expect("Welcome to the chat, late!");
    late.expect("late has joined the chat.");
    pending.name = "pending".to_owned();
    pending.send_line("pending");
    pending.expect("Welcome to the chat, pending!");
    pending.expect("pending has joined the chat.");
    late.expect("pending has joined the chat.");
}

#[test]
fn memory_handshake_timeout_closes_a_silent_connection_only() {
    let config = ServerConfig::default().name_timeout(Duration::from_secs(1));
    let server = MemServer::start(config);
    let mut ana = server.join("ana");
    let mut silent = server.connect();
    silent.expect("NAME");
    silent.expect("Timed out waiting for a name.");
    silent.expect_closed();
    ana.expect_nothing_pending();
    assert_eq!(server.room.len(), 1);
}

#[test]
fn memory_concurrent_senders_every_member_sees_the_same_order() {
    const SENDERS: usize = 4;
    const LINES: usize = 200;
    let server = MemServer::start(ServerConfig::default());
    let mut clients: Vec<Line> = Vec::new();
    for name in ["s0", "s1", "s2", "s3", "passive"] {
        let client = server.join(name);
        for earlier in &mut clients {
            earlier.expect(&format!("{name} has joined the chat."));
        }
        clients.push(client);
    }
    let mut passive = clients.pop().expect("passive");
    let start = Arc::new(Barrier::new(SENDERS));
    let senders: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                for i in 0..LINES {
                    client.send_line(&format!("{s}-{i}"));
                }
                // What comes back (~12 KB) fits in the pipe.
                let lines: Vec<String> = (0..SENDERS * LINES).map(|_| client.line()).collect();
                (client, lines)
            })
        })
        .collect();
    let reference: Vec<String> = (0..SENDERS * LINES).map(|_| passive.line()).collect();
    let mut next = [0; SENDERS];
    for line in &reference {
        let s: usize = line[1..2].parse().expect("sender digit");
        assert_eq!(*line, format!("s{s}: {s}-{}", next[s]), "per-sender order");
        next[s] += 1;
    }
    let mut done = Vec::new();
    for sender in senders {
        let (client, lines) = sender.join().expect("sender thread");
        assert!(lines == reference, "{} saw another order", client.name);
        done.push(client);
    }
    for client in done.iter_mut().chain([&mut passive]) {
        client.expect_nothing_pending();
    }
}

#[test]
fn memory_slow_consumer_with_small_pipes_is_disconnected_while_others_keep_flowing() {
    /// Lines per round: ~900 bytes, well under the 8 KiB queues.
    const ROUND: usize = 8;
    const MAX_LINES: usize = 10_000;
    let config = ServerConfig::default().max_line(1024).queue_bytes(8 * 1024);
    let server = MemServer::with_pipe_capacity(1024, config);
    let mut flooder = server.join("flooder");
    let mut observer = server.join("observer");
    flooder.expect("observer has joined the chat.");
    let mut slow = server.join("slow");
    flooder.expect("slow has joined the chat.");
    observer.expect("slow has joined the chat.");
    // From here on `slow` reads nothing.

    let text = |i: usize| format!("{i} {}", "x".repeat(100));
    let mut sent = 0;
    let mut leaves = [0, 0];
    while leaves != [1, 1] {
        assert!(sent < MAX_LINES, "the slow member was not disconnected");
        for i in sent..sent + ROUND {
            flooder.send_line(&text(i));
        }
        // Each round is read in full by both before the next one.
        for (k, client) in [&mut flooder, &mut observer].into_iter().enumerate() {
            let mut i = sent;
            while i < sent + ROUND {
                let line = client.line();
                if line == "slow has left the chat." {
                    leaves[k] += 1;
                    assert_eq!(leaves[k], 1, "{}: leave notices", client.name);
                } else {
                    assert_eq!(line, format!("flooder: {}", text(i)), "{}", client.name);
                    i += 1;
                }
            }
        }
        sent += ROUND;
    }
    for client in [&mut flooder, &mut observer] {
        client.expect_nothing_pending();
    }
    let mut again = server.join("slow");
    again.expect_nothing_pending();
    flooder.expect("slow has joined the chat.");
    observer.expect("slow has joined the chat.");

    // The slow member got an in-order prefix, then its end of stream.
    let rest = slow.read_to_end();
    let rest = String::from_utf8_lossy(&rest);
    let complete = rest.rfind('\n').map_or("", |end| &rest[..end]);
    for (i, line) in complete.lines().enumerate() {
        assert_eq!(
            line,
            format!("flooder: {}", text(i)),
            "slow member's stream"
        );
    }
}

#[test]
fn memory_shutdown_delivers_accepted_lines_then_last_line() {
    let mut server = MemServer::start(ServerConfig::default());
    let mut ana = server.join("ana");
    let mut bob = server.join("bob");
    ana.expect("bob has joined the chat.");
    let mut pending = server.connect();
    pending.expect("NAME");
    for i in 0..20 {
        ana.send_line(&format!("line {i}"));
    }
    for i in 0..20 {
        ana.expect(&format!("ana: line {i}"));
    }

    let started = Instant::now();
    server.stop().expect("the server stopped cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    ana.expect(LAST);
    ana.expect_closed();
    for i in 0..20 {
        bob.expect(&format!("ana: line {i}"));
    }
    bob.expect(LAST);
    bob.expect_closed();
    pending.expect(LAST);
    pending.expect_closed();
    assert!(server.room.is_empty());
}

#[test]
fn memory_shutdown_with_no_connections_returns_promptly() {
    let mut server = MemServer::start(ServerConfig::default());
    let started = Instant::now();
    server.stop().expect("the server stopped cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
}
