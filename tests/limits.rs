//! Limits over real TCP: the maximum of clients, the handshake timeout, the
//! slow-consumer policy and capacity (docs/PROTOCOL.md, "Handshake" and
//! "Leaving, limits and shutdown").

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::{Client, TestServer, IO_MODES, TIMEOUT};

const FULL: &str = "Server is full.";
const TIMED_OUT: &str = "Timed out waiting for a name.";
const INVALID_NAME: &str =
    "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.";

/// Connects until the server answers `NAME` rather than `Server is full.`
/// (a slot frees only once the server has noticed a close), bounded by
/// [`TIMEOUT`].
fn connect_when_a_slot_frees(server: &TestServer) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = server.connect();
        match client.next_line().as_deref() {
            Some("NAME") => return client,
            Some(FULL) => client.expect_closed(),
            other => panic!("expected NAME or {FULL:?}, got {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed within {TIMEOUT:?}"
        );
    }
}

#[test]
fn server_full_counts_connections_still_in_the_handshake() {
    for &io in IO_MODES {
        let server = TestServer::with_config(io, ServerConfig::default().max_clients(2));
        let mut first = server.connect();
        first.expect("NAME");
        let mut second = server.connect();
        second.expect("NAME");

        let mut third = server.connect();
        third.expect(FULL);
        third.expect_closed();
        assert_eq!(server.room.len(), 0, "nobody joined");

        // A connection that ends in the handshake frees its slot.
        drop(first);
        let mut again = connect_when_a_slot_frees(&server);
        again.send_line("cy");
        again.expect("Welcome to the chat, cy!");
        again.expect("cy has joined the chat.");

        // Full again: `second` (still in the handshake) and cy.
        let mut fourth = server.connect();
        fourth.expect(FULL);
        fourth.expect_closed();

        second.send_line("dan");
        second.expect("Welcome to the chat, dan!");
        second.expect("dan has joined the chat.");
        again.expect("dan has joined the chat.");
    }
}

#[test]
fn server_full_refuses_a_third_member_then_admits_one_after_a_member_leaves() {
    for &io in IO_MODES {
        let server = TestServer::with_config(io, ServerConfig::default().max_clients(2));
        let ana = server.join("ana");
        let mut bob = server.join("bob");

        let mut third = server.connect();
        third.expect(FULL);
        third.expect_closed();
        bob.expect_nothing_pending();

        drop(ana);
        bob.expect("ana has left the chat.");
        let mut cy = connect_when_a_slot_frees(&server);
        cy.name = "cy".to_owned();
        cy.send_line("cy");
        cy.expect("Welcome to the chat, cy!");
        cy.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
        bob.expect_nothing_pending();
        cy.expect_nothing_pending();
    }
}

#[test]
fn handshake_timeout_closes_a_silent_connection_but_not_a_member_who_joined_in_time() {
    for &io in IO_MODES {
        let config = ServerConfig::default().name_timeout(Duration::from_secs(1));
        let server = TestServer::with_config(io, config);
        // The member connects first, so its own handshake deadline has
        // passed by the time the silent one's has.
        let mut ana = server.join("ana");
        let mut silent = server.connect();
        silent.expect("NAME");
        silent.expect(TIMED_OUT);
        silent.expect_closed();

        ana.expect_nothing_pending();
        ana.send_line("still here");
        ana.expect("ana: still here");
        assert_eq!(server.room.len(), 1);
    }
}

#[test]
fn handshake_timeout_is_not_extended_by_rejected_names() {
    for &io in IO_MODES {
        let config = ServerConfig::default().name_timeout(Duration::from_secs(1));
        let server = TestServer::with_config(io, config);
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("read timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        assert_eq!(read_line(&mut reader).0, "NAME");

        let started = Instant::now();
        let mut rejected = 0;
        let mut buffered = false;
        loop {
            // Before sending again, make sure the timeout line is not on its
            // way: writing to a connection the server has closed could reset
            // it and lose the line.
            if buffered || readable_within(&stream, Duration::from_millis(50)) {
                break;
            }
            writer.write_all(b"not a name\n").expect("send");
            let (reply, _) = read_line(&mut reader);
            if reply == TIMED_OUT {
                assert_eq!(read_rest(&stream, &mut reader), "", "after the timeout");
                assert!(rejected >= 2, "only {rejected} names were rejected");
                return;
            }
            assert_eq!(reply, INVALID_NAME);
            let (ask, more) = read_line(&mut reader);
            assert_eq!(ask, "NAME");
            buffered = more;
            rejected += 1;
            assert!(
                started.elapsed() < TIMEOUT,
                "rejected names kept the handshake open for {TIMEOUT:?}"
            );
        }
        assert_eq!(read_line(&mut reader).0, TIMED_OUT);
        assert_eq!(read_rest(&stream, &mut reader), "", "after the timeout");
        assert!(rejected >= 2, "only {rejected} names were rejected");
    }
}

/// The next line, and whether more bytes are already buffered.
fn read_line(reader: &mut BufReader<TcpStream>) -> (String, bool) {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .expect("a line within the timeout");
    assert!(n > 0, "connection closed, a line was expected");
    assert_eq!(line.pop(), Some('\n'), "stream ended inside a line");
    (line, !reader.buffer().is_empty())
}

/// Whether `stream` has bytes to read within `wait`.
fn readable_within(stream: &TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let readable = match stream.peek(&mut [0]) {
        Ok(_) => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("peek failed: {e}"),
    };
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    readable
}

/// Everything until end of stream (a reset counts as the end); fails on
/// timeout.
fn read_rest(stream: &TcpStream, reader: &mut BufReader<TcpStream>) -> String {
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut rest = Vec::new();
    loop {
        let mut chunk = Vec::new();
        match reader.read_until(b'\n', &mut chunk) {
            Ok(0) => break,
            Ok(_) => rest.extend_from_slice(&chunk),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no end of stream: {e}"),
        }
    }
    String::from_utf8(rest).expect("UTF-8")
}

/// A count that threads raise and others wait on.
#[derive(Default)]
struct Counter {
    value: Mutex<u64>,
    changed: Condvar,
}

impl Counter {
    fn add(&self) {
        *self.value.lock().expect("counter lock") += 1;
        self.changed.notify_all();
    }

    fn get(&self) -> u64 {
        *self.value.lock().expect("counter lock")
    }

    /// Waits until the count is at least `n`; fails after [`TIMEOUT`].
    fn wait_at_least(&self, n: u64, what: &str) -> u64 {
        let deadline = Instant::now() + TIMEOUT;
        let mut value = self.value.lock().expect("counter lock");
        while *value < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "stalled: {what} stuck at {}", *value);
            value = self.changed.wait_timeout(value, left).expect("lock").0;
        }
        *value
    }
}

/// The text of the `i`th flood line, about 1 KiB.
fn flood_text(i: u64) -> String {
    format!("{i} {}", "x".repeat(1000))
}

/// Reads a member's flood: `<sender>: <i> …` in order from 0, with
/// `<slow> has left the chat.` among them, up to `<sender>: done`.
/// Returns the client, how many flood lines it got, and how many leave
/// notices.
fn spawn_flood_reader(
    mut client: Client,
    sender: &'static str,
    slow: &'static str,
    received: Arc<Counter>,
    leaves: Arc<Counter>,
) -> JoinHandle<(Client, u64, u64)> {
    thread::spawn(move || {
        let left = format!("{slow} has left the chat.");
        let done = format!("{sender}: done");
        let prefix = format!("{sender}: ");
        let (mut next, mut left_seen) = (0u64, 0u64);
        loop {
            let line = client.line();
            if line == left {
                left_seen += 1;
                leaves.add();
            } else if line == done {
                return (client, next, left_seen);
            } else {
                let text = line
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", client.name));
                assert_eq!(
                    text,
                    flood_text(next),
                    "{}: flood line out of order or lost",
                    client.name
                );
                next += 1;
                received.add();
            }
        }
    })
}

#[test]
fn member_that_never_reads_is_disconnected_while_others_keep_flowing() {
    /// Flood lines the sender may have sent beyond what both readers got:
    /// ~48 KiB, under the 64 KiB queues, so that no reader can overflow.
    const WINDOW: u64 = 48;
    /// Give up if the never-reading member outlasts this many lines.
    const MAX_LINES: u64 = 50_000;

    for &io in IO_MODES {
        let config = ServerConfig::default().queue_bytes(64 * 1024);
        let server = TestServer::with_config(io, config);
        let mut flooder = server.join("flooder");
        let mut observer = server.join("observer");
        flooder.expect("observer has joined the chat.");
        let mut slow = server.join("slow");
        flooder.expect("slow has joined the chat.");
        observer.expect("slow has joined the chat.");
        // From here on `slow` reads nothing.

        let mut out = flooder.stream().try_clone().expect("clone");
        out.set_nodelay(true).expect("nodelay");
        let (got_flooder, got_observer) = (Arc::new(Counter::default()), Arc::default());
        let leaves = Arc::new(Counter::default());
        let flooder_reader = spawn_flood_reader(
            flooder,
            "flooder",
            "slow",
            got_flooder.clone(),
            leaves.clone(),
        );
        let observer_reader = spawn_flood_reader(
            observer,
            "flooder",
            "slow",
            Arc::clone(&got_observer),
            leaves.clone(),
        );

        let started = Instant::now();
        let mut sent = 0u64;
        while leaves.get() < 2 {
            assert!(
                sent < MAX_LINES,
                "the member that never reads was not disconnected after {sent} lines"
            );
            assert!(
                started.elapsed() < TIMEOUT,
                "flood too slow: {sent} lines in {TIMEOUT:?}"
            );
            let floor = sent.saturating_sub(WINDOW);
            let a = got_flooder.wait_at_least(floor, "the flooder's own lines");
            let b = got_observer.wait_at_least(floor, "the observer's lines");
            let allowed = a.min(b) + WINDOW - sent;
            let mut burst = String::new();
            for i in sent..sent + allowed {
                burst.push_str(&flood_text(i));
                burst.push('\n');
            }
            out.write_all(burst.as_bytes()).expect("flood");
            sent += allowed;
        }
        out.write_all(b"done\n").expect("send done");

        for (reader, who) in [(flooder_reader, "flooder"), (observer_reader, "observer")] {
            let (mut client, got, left) = reader.join().expect("reader thread");
            assert_eq!(got, sent, "{who} lost flood lines");
            assert_eq!(left, 1, "{who}: leave notices of the slow member");
            client.expect_nothing_pending();
        }

        // Its name is free again.
        let mut again = server.join("slow");
        again.expect_nothing_pending();

        // The old connection got an in-order prefix of the flood, then its end.
        let rest = slow.read_until_cut();
        let rest = String::from_utf8_lossy(&rest);
        let complete = match rest.rfind('\n') {
            Some(end) => &rest[..end],
            None => "",
        };
        for (i, line) in complete.lines().enumerate() {
            assert_eq!(
                line,
                format!("flooder: {}", flood_text(i as u64)),
                "slow member's stream"
            );
        }
    }
}

#[test]
fn capacity_500_members_joined_at_once_all_see_the_same_join_order() {
    const MEMBERS: usize = 500;
    for &io in IO_MODES {
        let server = TestServer::start(io);
        // Connect in rounds, so that the listen backlog never overflows
        // (a dropped SYN costs a second); the joins below still race.
        let mut clients: Vec<Client> = Vec::with_capacity(MEMBERS);
        for round in 0..MEMBERS / 50 {
            let start = clients.len();
            for i in 0..50 {
                let mut client = server.connect();
                client.name = format!("m{}", round * 50 + i);
                clients.push(client);
            }
            for client in &mut clients[start..] {
                client.expect("NAME");
            }
        }
        // Every name goes out before any reply is read: the joins race.
        for client in &mut clients {
            let name = client.name.clone();
            client.send_line(&name);
        }
        server.wait_members(MEMBERS);
        clients[0].send_line("end");

        // Each member's stream fits in socket buffers, so reading one
        // member after the other is fine.
        let mut seen: Vec<Vec<String>> = Vec::with_capacity(MEMBERS);
        for client in &mut clients {
            let name = client.name.clone();
            client.expect(&format!("Welcome to the chat, {name}!"));
            let joins = client.read_until("m0: end");
            for line in &joins {
                assert!(
                    line.ends_with(" has joined the chat."),
                    "{name}: unexpected line {line:?}"
                );
            }
            assert_eq!(
                joins.first(),
                Some(&format!("{name} has joined the chat.")),
                "{name}: its own join line comes first"
            );
            seen.push(joins);
        }

        let all = seen
            .iter()
            .max_by_key(|s| s.len())
            .expect("members")
            .clone();
        assert_eq!(all.len(), MEMBERS, "the first member saw every join");
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), MEMBERS, "each member joined once");
        for (client, joins) in clients.iter().zip(&seen) {
            let own = format!("{} has joined the chat.", client.name);
            let at = all.iter().position(|l| *l == own).expect("own join");
            assert_eq!(
                joins[..],
                all[at..],
                "{}: joins after its own, in the room's order",
                client.name
            );
        }
        let names: Vec<&str> = all
            .iter()
            .map(|l| l.strip_suffix(" has joined the chat.").expect("join line"))
            .collect();
        let last = &mut clients[MEMBERS - 1];
        last.send_line("\\list");
        last.expect(&format!("Users online ({MEMBERS}): {}", names.join(", ")));
    }
}
