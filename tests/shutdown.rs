//! Shutdown over real TCP (docs/PROTOCOL.md, "Leaving, limits and shutdown"):
//! every member gets every line accepted before, then `Server is shutting
//! down.` as its last line and the end of stream; connections in the
//! handshake get the same line; nothing blocks the server from stopping.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::{wait_until, Client, TestServer, IO_MODES, TIMEOUT};

const LAST: &str = "Server is shutting down.";

/// Stops the server and checks that `run` returned within `limit`:
/// docs/PROTOCOL.md has the process exit within a few seconds of the shutdown.
fn stop_within(server: &mut TestServer, limit: Duration) {
    let started = Instant::now();
    server.stop().expect("the server stopped cleanly");
    assert!(
        started.elapsed() < limit,
        "stop took {:?}",
        started.elapsed()
    );
}

/// After the server has stopped, a new connection is refused, or closed
/// without a `NAME` (at most the last line before the end).
fn assert_refused_or_closed(addr: SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut chunk = [0; 256];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("a connection after shutdown was neither refused nor closed: {e}"),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || got == format!("{LAST}\n"),
        "a connection after shutdown got {got:?}"
    );
}

#[test]
fn shutdown_delivers_accepted_lines_then_last_line_to_members_and_handshake_connection() {
    for &io in IO_MODES {
        let mut server = TestServer::start(io);
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");
        let mut cy = server.join("cy");
        ana.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
        let mut pending = server.connect();
        pending.expect("NAME");

        // Lines accepted before the shutdown: ana has read their echoes and
        // cy its whisper; bob has read nothing of them.
        for i in 0..50 {
            ana.send_line(&format!("line {i}"));
        }
        for i in 0..50 {
            ana.expect(&format!("ana: line {i}"));
        }
        ana.send_line("\\w cy psst");
        for i in 0..50 {
            cy.expect(&format!("ana: line {i}"));
        }
        cy.expect("priv(ana): psst");

        server.trigger_shutdown();

        ana.expect(LAST);
        ana.expect_closed();
        for i in 0..50 {
            bob.expect(&format!("ana: line {i}"));
        }
        bob.expect(LAST);
        bob.expect_closed();
        cy.expect(LAST);
        cy.expect_closed();
        pending.expect(LAST);
        pending.expect_closed();

        stop_within(&mut server, Duration::from_secs(5));
    }
}

#[test]
fn connections_after_shutdown_are_refused_or_closed() {
    for &io in IO_MODES {
        let mut server = TestServer::start(io);
        let mut ana = server.join("ana");
        server.stop().expect("the server stopped cleanly");
        ana.expect(LAST);
        ana.expect_closed();
        assert_refused_or_closed(server.addr);
    }
}

#[test]
fn shutdown_refuses_new_names_and_new_lines_once_begun() {
    for &io in IO_MODES {
        let mut server = TestServer::start(io);
        let mut ana = server.join("ana");
        let mut pending = server.connect();
        pending.expect("NAME");
        server.trigger_shutdown();
        // Whatever the shutdown raced with, nothing new is accepted.
        ana.send_line("too late");
        pending.send_line("latecomer");
        ana.expect(LAST);
        ana.expect_closed();
        pending.expect(LAST);
        pending.expect_closed();
        server.stop().expect("the server stopped cleanly");
        assert_eq!(server.room.len(), 0, "nobody is left in the room");
    }
}

/// Reads `ana: <i>` lines from 0 in order up to the last line and the end
/// of stream; returns how many it got.
fn spawn_prefix_reader(mut client: Client, progress: Arc<AtomicU64>) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut next = 0u64;
        loop {
            let line = client.line();
            if line == LAST {
                client.expect_closed();
                return next;
            }
            assert_eq!(
                line,
                format!("ana: {next}"),
                "{}: a gap or a line out of order",
                client.name
            );
            next += 1;
            progress.store(next, Ordering::SeqCst);
        }
    })
}

#[test]
fn shutdown_during_flood_every_member_gets_a_gapless_prefix_then_the_last_line() {
    /// At most this many lines (~650 KB at each member, under its 1 MiB
    /// queue even if it read nothing meanwhile).
    const MAX_LINES: u64 = 50_000;
    for &io in IO_MODES {
        let mut server = TestServer::start(io);
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");
        let cy = server.join("cy");
        ana.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");

        let mut out = ana.stream().try_clone().expect("clone");
        out.set_nodelay(true).expect("nodelay");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0u64;
                while sent < MAX_LINES && !stop.load(Ordering::SeqCst) {
                    let mut burst = String::new();
                    for i in sent..sent + 100 {
                        burst.push_str(&format!("{i}\n"));
                    }
                    if out.write_all(burst.as_bytes()).is_err() {
                        break;
                    }
                    sent += 100;
                }
            })
        };
        let progress: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
        let readers: Vec<_> = [ana, bob, cy]
            .into_iter()
            .zip(&progress)
            .map(|(client, p)| spawn_prefix_reader(client, p.clone()))
            .collect();

        wait_until(
            || progress[1].load(Ordering::SeqCst) >= 200,
            "the first lines at bob",
        );
        server.trigger_shutdown();
        stop.store(true, Ordering::SeqCst);

        let counts: Vec<u64> = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect();
        writer.join().expect("writer thread");
        assert!(counts[1] >= 200, "bob's lines before the shutdown");
        assert_eq!(
            counts,
            vec![counts[0]; 3],
            "every member gets every accepted line (ana, bob, cy)"
        );
        server.stop().expect("the server stopped cleanly");
    }
}

#[test]
fn shutdown_with_no_connections_returns_promptly() {
    for &io in IO_MODES {
        let mut server = TestServer::start(io);
        stop_within(&mut server, Duration::from_secs(2));
    }
}

#[test]
fn shutdown_is_not_blocked_by_an_idle_member_or_an_idle_handshake() {
    for &io in IO_MODES {
        let config = ServerConfig::default().shutdown_grace(Duration::from_secs(5));
        let mut server = TestServer::with_config(io, config);
        // Neither reads nor writes until the server has stopped.
        let mut idle = server.join("idle");
        let mut silent = server.connect();
        silent.expect("NAME");

        stop_within(&mut server, Duration::from_secs(5));
        idle.expect(LAST);
        idle.expect_closed();
        silent.expect(LAST);
        silent.expect_closed();
    }
}

#[test]
fn shutdown_is_not_blocked_by_a_member_whose_socket_is_full() {
    /// Lines of ~1 KiB each way: 8 MiB, more than the socket buffers of a
    /// member that never reads, less than its 64 MiB queue.
    const LINES: usize = 8 * 1024;
    for &io in IO_MODES {
        let config = ServerConfig::default()
            .queue_bytes(64 << 20)
            .shutdown_grace(Duration::from_secs(1));
        let mut server = TestServer::with_config(io, config);
        let mut talker = server.join("talker");
        let _stuck = server.join("stuck");
        talker.expect("stuck has joined the chat.");

        let mut out = talker.stream().try_clone().expect("clone");
        let pad = "x".repeat(1000);
        let writer = thread::spawn(move || {
            for i in 0..LINES {
                out.write_all(format!("{i} {pad}\n").as_bytes())
                    .expect("flood");
            }
        });
        let pad = "x".repeat(1000);
        for i in 0..LINES {
            talker.expect(&format!("talker: {i} {pad}"));
        }
        writer.join().expect("writer thread");

        stop_within(&mut server, TIMEOUT);
        talker.expect(LAST);
        talker.expect_closed();
    }
}
