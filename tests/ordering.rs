//! Ordering (PROTOCOL.md, "Ordering") over every transport, and in mixed
//! rooms where members of every transport talk at once: one total order of
//! room events at every member, per-sender order, and the boundaries of a
//! member's view at its join and its leave.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use chatcore::ServerConfig;
use common::{wait_until, Case, Client, Kind, TestServer, IO_MODES, TRANSPORTS};

/// How the members of a test connect.
#[derive(Debug, Clone, Copy)]
enum Room {
    /// Every member over one transport.
    Over(Kind),
    /// Member `i` over `TRANSPORTS[i % TRANSPORTS.len()]`: with four
    /// senders, one sender per transport.
    Mixed,
}

impl Room {
    /// The transport of the `i`th member to join.
    fn kind_of(self, i: usize) -> Kind {
        match self {
            Room::Over(kind) => kind,
            Room::Mixed => TRANSPORTS[i % TRANSPORTS.len()],
        }
    }
}

/// Runs `test` for each I/O mode, in a room over each transport and in a
/// mixed room, each time on a new server with every listener.
fn each_room(mut test: impl FnMut(TestServer, Room)) {
    let rooms = TRANSPORTS.iter().map(|&kind| Room::Over(kind));
    for &io in IO_MODES {
        for room in rooms.clone().chain([Room::Mixed]) {
            let _case = Case::new(format!("{io:?}, {room:?}"));
            test(
                TestServer::with_transports(io, ServerConfig::default()),
                room,
            );
        }
    }
}

/// Joins `names` in order, the `i`th over `room.kind_of(i)`; each client
/// has read every join notice so far.
fn join_all(server: &TestServer, room: Room, names: &[&str]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let client = server.join_over(room.kind_of(i), name);
        for earlier in &mut clients {
            earlier.expect(&format!("{name} has joined the chat."));
        }
        clients.push(client);
    }
    clients
}

/// The public text sender `s` sends as its `i`th line.
fn text(s: usize, i: usize) -> String {
    format!("m{s}-{i}")
}

/// Checks that `lines` (public lines only) hold exactly `per_sender` lines
/// of each of `senders` senders, each sender's in the order sent.
fn check_per_sender_order(who: &str, lines: &[String], senders: usize, per_sender: usize) {
    let mut next = vec![0; senders];
    for line in lines {
        let (name, body) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{who}: not a public line: {line:?}"));
        let s: usize = name
            .strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{who}: unexpected line {line:?}"));
        assert_eq!(body, text(s, next[s]), "{who}: {name}'s lines out of order");
        next[s] += 1;
    }
    assert_eq!(next, vec![per_sender; senders], "{who}: lines lost");
}

#[test]
fn concurrent_senders_every_member_sees_the_same_total_order() {
    const SENDERS: usize = 4;
    const LINES: usize = 200;
    each_room(|server, room| {
        let names = ["s0", "s1", "s2", "s3", "passive"];
        let mut clients = join_all(&server, room, &names);
        let mut passive = clients.pop().expect("passive member");

        let start = Arc::new(Barrier::new(SENDERS));
        let senders: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(s, mut client)| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    for i in 0..LINES {
                        client.send_line(&text(s, i));
                    }
                    // All that comes back fits in the socket buffers.
                    let lines: Vec<String> = (0..SENDERS * LINES).map(|_| client.line()).collect();
                    (client, lines)
                })
            })
            .collect();

        let reference: Vec<String> = (0..SENDERS * LINES).map(|_| passive.line()).collect();
        check_per_sender_order("passive", &reference, SENDERS, LINES);
        let mut sender_clients = Vec::new();
        for (s, sender) in senders.into_iter().enumerate() {
            let (client, lines) = sender.join().expect("sender thread");
            assert!(
                lines == reference,
                "s{s} saw another order than passive (first difference at line {:?})",
                lines.iter().zip(&reference).position(|(a, b)| a != b)
            );
            sender_clients.push(client);
        }
        passive.expect_nothing_pending();
        for client in &mut sender_clients {
            client.expect_nothing_pending();
        }
    });
}

#[test]
fn member_joining_mid_stream_sees_nothing_before_its_join_and_leaver_nothing_after_it_left() {
    const SENDERS: usize = 4;
    const LINES: usize = 300;
    const HALF: usize = LINES / 2;
    each_room(|server, room| {
        let names = ["s0", "s1", "s2", "s3", "passive", "leaver"];
        let mut clients = join_all(&server, room, &names);
        let mut leaver = clients.pop().expect("leaver");
        let mut passive = clients.pop().expect("passive");

        // Senders send half their lines, wait until the newcomer has joined
        // and the leaver has asked to quit, then send the rest.
        let middle_done = Arc::new(AtomicBool::new(false));
        // Everyone reads until it has seen each sender's last line and the
        // leave notice (the leave comes after the newcomer's join).
        let last_lines: Vec<String> = (0..SENDERS)
            .map(|s| format!("s{s}: {}", text(s, LINES - 1)))
            .chain(["leaver has left the chat.".to_owned()])
            .collect();
        let senders: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(s, mut client)| {
                let middle_done = middle_done.clone();
                let last_lines = last_lines.clone();
                thread::spawn(move || {
                    for i in 0..LINES {
                        if i == HALF {
                            wait_until(
                                || middle_done.load(Ordering::SeqCst),
                                "the mid-stream join",
                            );
                        }
                        client.send_line(&text(s, i));
                    }
                    let lines = read_until_all(&mut client, &last_lines);
                    (client, lines)
                })
            })
            .collect();

        let passive_count = Arc::new(AtomicUsize::new(0));
        let passive_reader = {
            let count = passive_count.clone();
            let last_lines = last_lines.clone();
            thread::spawn(move || {
                let mut lines = Vec::new();
                let mut pending: Vec<&String> = last_lines.iter().collect();
                while !pending.is_empty() {
                    let line = passive.line();
                    pending.retain(|l| **l != line);
                    lines.push(line);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                (passive, lines)
            })
        };

        wait_until(
            || passive_count.load(Ordering::SeqCst) >= 100,
            "the first lines at the passive member",
        );
        let mut late = server.join_over(room.kind_of(names.len()), "late");
        leaver.send_line("QUIT");
        middle_done.store(true, Ordering::SeqCst);

        let late_lines = read_until_all(&mut late, &last_lines);
        let mut leaver_lines = Vec::new();
        while let Some(line) = leaver.next_line() {
            leaver_lines.push(line);
        }
        if leaver.kind().is_websocket() {
            assert_eq!(leaver.close_code(), Some(1000), "the leaver's close code");
        }
        let (mut passive, reference) = passive_reader.join().expect("passive reader");
        let mut sender_clients = Vec::new();
        for (s, sender) in senders.into_iter().enumerate() {
            let (client, lines) = sender.join().expect("sender thread");
            assert!(
                lines == reference,
                "s{s} saw another order than passive (first difference at line {:?})",
                lines.iter().zip(&reference).position(|(a, b)| a != b)
            );
            sender_clients.push(client);
        }
        let publics: Vec<String> = reference
            .iter()
            .filter(|l| !l.ends_with(" the chat."))
            .cloned()
            .collect();
        check_per_sender_order("passive", &publics, SENDERS, LINES);

        // The newcomer: exactly what the old member saw after its join line.
        let joined = reference
            .iter()
            .position(|l| l == "late has joined the chat.")
            .expect("passive saw the join");
        assert!(joined > 0, "lines were accepted before the join");
        let late_publics = late_lines
            .iter()
            .filter(|l| !l.ends_with(" the chat."))
            .count();
        assert!(
            late_publics >= SENDERS * (LINES - HALF),
            "the lines sent after the join reached the newcomer ({late_publics})"
        );
        assert!(
            late_lines == reference[joined + 1..],
            "late's lines differ from the passive member's after the join \
             (late got {}, passive {} after the join)",
            late_lines.len(),
            reference.len() - joined - 1
        );

        // The leaver: exactly what the old member saw before the leave notice.
        let left = reference
            .iter()
            .position(|l| l == "leaver has left the chat.")
            .expect("passive saw the leave");
        assert_eq!(
            reference
                .iter()
                .filter(|l| l.starts_with("leaver has left"))
                .count(),
            1,
            "one leave notice"
        );
        assert!(left >= 100, "the leave came after the first lines");
        assert!(
            leaver_lines == reference[..left],
            "the leaver's lines differ from the passive member's before the leave \
             (leaver got {}, passive {} before the leave)",
            leaver_lines.len(),
            left
        );

        passive.expect_nothing_pending();
        late.expect_nothing_pending();
        for client in &mut sender_clients {
            client.expect_nothing_pending();
        }
    });
}

/// Reads until every line of `last` has been seen; returns all lines read.
fn read_until_all(client: &mut Client, last: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending: Vec<&String> = last.iter().collect();
    while !pending.is_empty() {
        let line = client.line();
        pending.retain(|l| **l != line);
        lines.push(line);
    }
    lines
}

#[test]
fn whispers_and_public_lines_from_one_sender_to_one_target_arrive_in_send_order() {
    const LINES: usize = 300;
    each_room(|server, room| {
        let mut clients = join_all(&server, room, &["ana", "bob", "noise"]);
        let mut noise = clients.pop().expect("noise");
        let mut bob = clients.pop().expect("bob");
        let mut ana = clients.pop().expect("ana");

        // Another member talks at the same time.
        let noise_thread = thread::spawn(move || {
            for i in 0..LINES {
                noise.send_line(&format!("n{i}"));
            }
            noise
        });
        let mut to_bob = Vec::new();
        let mut to_ana = Vec::new();
        for i in 0..LINES {
            match i % 3 {
                0 => {
                    ana.send_line(&format!("p{i}"));
                    to_bob.push(format!("ana: p{i}"));
                    to_ana.push(format!("ana: p{i}"));
                }
                1 => {
                    ana.send_line(&format!("\\w bob w{i}"));
                    to_bob.push(format!("priv(ana): w{i}"));
                }
                _ => {
                    ana.send_line(&format!("\\w BOB w{i}  x "));
                    to_bob.push(format!("priv(ana): w{i}  x "));
                }
            }
        }
        let mut noise = noise_thread.join().expect("noise thread");

        for (client, expected) in [
            (&mut bob, &to_bob),
            (&mut ana, &to_ana),
            (&mut noise, &to_ana),
        ] {
            let mut got = Vec::new();
            let mut noise_seen = 0;
            while got.len() < expected.len() || noise_seen < LINES {
                let line = client.line();
                if line.starts_with("ana: ") || line.starts_with("priv(ana): ") {
                    got.push(line);
                } else {
                    assert_eq!(line, format!("noise: n{noise_seen}"), "{}", client.name);
                    noise_seen += 1;
                }
            }
            assert_eq!(&got, expected, "{}: lines from ana", client.name);
        }
        for client in [&mut ana, &mut bob, &mut noise] {
            client.expect_nothing_pending();
        }
    });
}
