//! Shutdown over every transport (PROTOCOL.md, "Leaving, limits and
//! shutdown"): every member gets every line accepted before, then `Server is
//! shutting down.` as its last line and the end of stream (over WebSocket a
//! close frame, 1001); connections in the handshake get the same line;
//! nothing blocks the server from stopping: not an idle member, a silent
//! handshake, a TLS or HTTP handshake never begun, or a full socket.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::{
    each_transport, wait_until, Case, Client, Kind, TestServer, IO_MODES, TIMEOUT, TRANSPORTS,
};

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
    each_transport(TRANSPORTS, ServerConfig::default(), |mut server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        let mut cy = server.join_over(kind, "cy");
        ana.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
        let mut pending = server.connect_over(kind);
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
        ana.expect_closed_with(1001);
        for i in 0..50 {
            bob.expect(&format!("ana: line {i}"));
        }
        bob.expect(LAST);
        bob.expect_closed_with(1001);
        cy.expect(LAST);
        cy.expect_closed_with(1001);
        pending.expect(LAST);
        pending.expect_closed_with(1001);

        // Closed on our side too: the server need not linger for us.
        drop((ana, bob, cy, pending));
        stop_within(&mut server, Duration::from_secs(5));
    });
}

#[test]
fn connections_after_shutdown_are_refused_or_closed() {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let mut server = TestServer::with_transports(io, ServerConfig::default());
        let mut members: Vec<Client> = TRANSPORTS
            .iter()
            .map(|&kind| server.connect_over(kind))
            .collect();
        for member in &mut members {
            member.expect("NAME");
        }
        server.stop().expect("the server stopped cleanly");
        for member in &mut members {
            member.expect(LAST);
            member.expect_closed_with(1001);
        }
        for kind in server.kinds() {
            assert_refused_or_closed(server.addr_for(kind));
        }
    }
}

#[test]
fn shutdown_refuses_new_names_and_new_lines_once_begun() {
    each_transport(TRANSPORTS, ServerConfig::default(), |mut server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut pending = server.connect_over(kind);
        pending.expect("NAME");
        server.trigger_shutdown();
        // Whatever the shutdown raced with, nothing new is accepted.
        ana.send_line("too late");
        pending.send_line("latecomer");
        ana.expect(LAST);
        ana.expect_closed_with(1001);
        pending.expect(LAST);
        pending.expect_closed_with(1001);
        drop((ana, pending));
        server.stop().expect("the server stopped cleanly");
        assert_eq!(server.room.len(), 0, "nobody is left in the room");
    });
}

/// Reads `ana: <i>` lines from 0 in order up to the last line and the end
/// of stream (over WebSocket, 1001); returns how many it got.
fn spawn_prefix_reader(mut client: Client, progress: Arc<AtomicU64>) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut next = 0u64;
        loop {
            let line = client.line();
            if line == LAST {
                client.expect_closed_with(1001);
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
    // ana floods over TCP (raw writes on her socket, as fast as it takes
    // them); bob and cy read over `kind`.
    each_transport(TRANSPORTS, ServerConfig::default(), |mut server, kind| {
        let mut ana = server.join("ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        let cy = server.join_over(kind, "cy");
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
    });
}

#[test]
fn shutdown_with_no_connections_returns_promptly() {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let mut server = TestServer::with_transports(io, ServerConfig::default());
        stop_within(&mut server, Duration::from_secs(2));
    }
}

/// A TCP connection to `addr` that sends nothing: on a TLS port a TLS
/// handshake never begun, on a WebSocket port an HTTP request never sent.
fn connect_silently(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
}

/// Expects the server to close `stream` (a reset counts); what it sent
/// before does not matter (a TLS alert, say).
fn expect_end(mut stream: TcpStream, what: &str) {
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: not closed by the server: {e}"),
    }
}

#[test]
fn shutdown_is_not_blocked_by_an_idle_member_or_an_idle_handshake() {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let config = ServerConfig::default().shutdown_grace(Duration::from_secs(5));
        let mut server = TestServer::with_transports(io, config);
        // None of them reads or writes until the server has stopped: a
        // member and a connection in the handshake over each transport,
        // and a TLS or HTTP handshake never begun on each port of those.
        let mut idle = Vec::new();
        let mut silent = Vec::new();
        let mut never_begun = Vec::new();
        for &kind in TRANSPORTS {
            idle.push(server.join_over(kind, &format!("idle-{kind}")));
            let mut handshake = server.connect_over(kind);
            handshake.expect("NAME");
            silent.push(handshake);
            if kind != Kind::Tcp {
                never_begun.push((kind, connect_silently(server.addr_for(kind))));
            }
        }
        server.wait_members(TRANSPORTS.len());

        stop_within(&mut server, Duration::from_secs(5));
        for client in idle.iter_mut().chain(&mut silent) {
            for line in client.read_until(LAST) {
                assert!(line.ends_with(" has joined the chat."), "{line:?}");
            }
            client.expect_closed_with(1001);
        }
        for (kind, stream) in never_begun {
            expect_end(stream, &format!("a {kind} handshake never begun"));
        }
    }
}

#[test]
fn shutdown_is_not_blocked_by_a_member_whose_socket_is_full() {
    /// Lines of ~1 KiB each way: 8 MiB, more than the socket buffers of a
    /// member that never reads, less than its 64 MiB queue.
    const LINES: usize = 8 * 1024;
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let config = ServerConfig::default()
            .queue_bytes(64 << 20)
            .shutdown_grace(Duration::from_secs(1));
        let mut server = TestServer::with_transports(io, config);
        let mut talker = server.join("talker");
        // One member that never reads over each transport.
        let mut stuck = Vec::new();
        for &kind in TRANSPORTS {
            let name = format!("stuck-{kind}");
            stuck.push(server.join_over(kind, &name));
            talker.expect(&format!("{name} has joined the chat."));
        }

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
        drop(stuck);
    }
}
