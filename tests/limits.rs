//! Limits over every transport: the maximum of clients, the handshake
//! timeout and capacity (PROTOCOL.md, "Handshake" and "Leaving, limits and
//! shutdown"; over WebSocket the close codes 1013 when full and 1008 for a
//! name timeout). The slow-consumer policy over every transport is in
//! tests/slow_members.rs; what is proper to the TLS and WebSocket ports (a
//! client limit counted over every transport, handshakes that never
//! finish) in tests/transport_limits.rs.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::{each_transport, Case, Client, Kind, TestServer, IO_MODES, TIMEOUT, TRANSPORTS};

const FULL: &str = "Server is full.";
const TIMED_OUT: &str = "Timed out waiting for a name.";
const INVALID_NAME: &str =
    "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.";

/// Connects over `kind` until the server answers `NAME` rather than
/// `Server is full.` (a slot frees only once the server has noticed a
/// close), bounded by [`TIMEOUT`].
fn connect_when_a_slot_frees(server: &TestServer, kind: Kind) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = server.connect_over(kind);
        match client.next_line().as_deref() {
            Some("NAME") => return client,
            Some(FULL) => client.expect_closed_with(1013),
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
    let config = ServerConfig::default().max_clients(2);
    each_transport(TRANSPORTS, config, |server, kind| {
        let mut first = server.connect_over(kind);
        first.expect("NAME");
        let mut second = server.connect_over(kind);
        second.expect("NAME");

        let mut third = server.connect_over(kind);
        third.expect(FULL);
        third.expect_closed_with(1013);
        assert_eq!(server.room.len(), 0, "nobody joined");

        // A connection that ends in the handshake frees its slot.
        drop(first);
        let mut again = connect_when_a_slot_frees(&server, kind);
        again.send_line("cy");
        again.expect("Welcome to the chat, cy!");
        again.expect("cy has joined the chat.");

        // Full again: `second` (still in the handshake) and cy.
        let mut fourth = server.connect_over(kind);
        fourth.expect(FULL);
        fourth.expect_closed_with(1013);

        second.send_line("dan");
        second.expect("Welcome to the chat, dan!");
        second.expect("dan has joined the chat.");
        again.expect("dan has joined the chat.");
    });
}

#[test]
fn server_full_refuses_a_third_member_then_admits_one_after_a_member_leaves() {
    let config = ServerConfig::default().max_clients(2);
    each_transport(TRANSPORTS, config, |server, kind| {
        let ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");

        let mut third = server.connect_over(kind);
        third.expect(FULL);
        third.expect_closed_with(1013);
        bob.expect_nothing_pending();

        drop(ana);
        bob.expect("ana has left the chat.");
        let mut cy = connect_when_a_slot_frees(&server, kind);
        cy.name = "cy".to_owned();
        cy.send_line("cy");
        cy.expect("Welcome to the chat, cy!");
        cy.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
        bob.expect_nothing_pending();
        cy.expect_nothing_pending();
    });
}

#[test]
fn handshake_timeout_closes_a_silent_connection_but_not_a_member_who_joined_in_time() {
    // Every transport at once, in one server: one timeout to wait for.
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let config = ServerConfig::default().name_timeout(Duration::from_secs(1));
        let server = TestServer::with_transports(io, config);
        // The members connect first, so their own handshake deadlines have
        // passed by the time the silent ones' have.
        let mut members: Vec<Client> = Vec::new();
        for &kind in TRANSPORTS {
            let name = format!("ana-{kind}");
            let member = server.join_over(kind, &name);
            for earlier in &mut members {
                earlier.expect(&format!("{name} has joined the chat."));
            }
            members.push(member);
        }
        let mut silent: Vec<Client> = TRANSPORTS
            .iter()
            .map(|&kind| server.connect_over(kind))
            .collect();
        for client in &mut silent {
            client.name = format!("silent over {}", client.kind());
            client.expect("NAME");
        }
        for client in &mut silent {
            client.expect(TIMED_OUT);
            client.expect_closed_with(1008);
        }

        for member in &mut members {
            member.expect_nothing_pending();
        }
        members[0].send_line("still here");
        for member in &mut members {
            member.expect("ana-tcp: still here");
        }
        assert_eq!(server.room.len(), TRANSPORTS.len());
    }
}

/// Over TCP only: the test reads the raw socket to know when the timeout
/// line is on its way; the timeout itself is the session's, the same over
/// every transport.
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

#[test]
fn capacity_500_members_joined_at_once_all_see_the_same_join_order() {
    const MEMBERS: usize = 500;
    // The members take turns over every transport: m0 over TCP, m1 over
    // TLS, m2 over WS, m3 over WSS, m4 over TCP...
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let server = TestServer::with_transports(io, ServerConfig::default());
        // Connect in rounds, so that the listen backlog never overflows
        // (a dropped SYN costs a second); the joins below still race.
        let mut clients: Vec<Client> = Vec::with_capacity(MEMBERS);
        for round in 0..MEMBERS / 50 {
            let start = clients.len();
            for i in 0..50 {
                let n = round * 50 + i;
                let mut client = server.connect_over(TRANSPORTS[n % TRANSPORTS.len()]);
                client.name = format!("m{n}");
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
