//! What is proper to the TLS and WebSocket ports (PROTOCOL.md,
//! "Transports"), over both I/O modes: one client limit over every transport
//! (`Server is full.`, then 1013 over WebSocket); the name timeout, counted
//! from the TCP accept, bounding a TLS handshake or an HTTP request head that
//! never finishes (slowloris); the HTTP paths, methods and the 8 KiB head
//! limit; and garbage on a TLS port, which costs its own connection and no
//! other.
#![cfg(all(feature = "tls", feature = "websocket"))]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::iter;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::raw::{http, raw, read_to_end, status};
use common::wire::Stream;
use common::{Case, Client, Kind, TestServer, Trust, IO_MODES, TIMEOUT, TRANSPORTS};

const FULL: &str = "Server is full.";

/// Runs `test` once per I/O mode, on a new server with every listener and
/// `config`.
fn each_io(config: ServerConfig, mut test: impl FnMut(TestServer)) {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        test(TestServer::with_transports(io, config.clone()));
    }
}

/// Members over every transport, `<prefix>-<kind>`, in that order, with
/// every join notice read.
fn members_over_every_transport(server: &TestServer, prefix: &str) -> Vec<Client> {
    let mut members: Vec<Client> = Vec::new();
    for &kind in TRANSPORTS {
        let name = format!("{prefix}-{kind}");
        let member = server.join_over(kind, &name);
        for earlier in &mut members {
            earlier.expect(&format!("{name} has joined the chat."));
        }
        members.push(member);
    }
    members
}

/// Each member says something; everyone gets every line, in one order.
fn everyone_still_chats(members: &mut [Client]) {
    for i in 0..members.len() {
        let line = format!("still here over {}", members[i].kind());
        members[i].send_line(&line);
        let said = format!("{}: {line}", members[i].name);
        for member in members.iter_mut() {
            member.expect(&said);
        }
    }
    for member in members {
        member.expect_nothing_pending();
    }
}

#[test]
fn the_client_limit_counts_every_transport_together() {
    each_io(ServerConfig::default().max_clients(2), |server| {
        let mut ana = server.join_over(Kind::Tcp, "ana");
        let bob = server.join_over(Kind::Ws, "bob");
        ana.expect("bob has joined the chat.");
        // Full: a newcomer over any transport is told so, and closed.
        for &kind in TRANSPORTS {
            let mut third = server.connect_over(kind);
            third.name = format!("a third over {kind}");
            third.expect(FULL);
            third.expect_closed_with(1013);
        }
        assert_eq!(server.room.len(), 2);

        // bob leaves: his slot, counted over WS, frees one over WSS.
        drop(bob);
        ana.expect("bob has left the chat.");
        let deadline = Instant::now() + TIMEOUT;
        let mut cy = loop {
            let mut client = server.connect_over(Kind::Wss);
            match client.next_line().as_deref() {
                Some("NAME") => break client,
                Some(FULL) => client.expect_closed_with(1013),
                other => panic!("expected NAME or {FULL:?}, got {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "no slot freed within {TIMEOUT:?}"
            );
        };
        cy.send_line("cy");
        cy.expect("Welcome to the chat, cy!");
        cy.expect("cy has joined the chat.");
        cy.name = "cy".into();
        ana.expect("cy has joined the chat.");
        // Full again, over TLS too.
        let mut fourth = server.connect_over(Kind::Tls);
        fourth.expect(FULL);
        fourth.expect_closed();
        ana.expect_nothing_pending();
        cy.expect_nothing_pending();
    });
}

/// How a connection that never finishes its handshake behaves.
#[derive(Debug, Clone, Copy)]
enum Stall {
    /// Connects and sends nothing (no ClientHello, no request).
    Silent,
    /// Sends the first half of a real TLS ClientHello, then nothing.
    HalfClientHello,
    /// An HTTP request head that never ends, a byte every 50 ms
    /// (slowloris); over `wss` inside a finished TLS handshake.
    Slowloris,
}

/// What a stalled connection saw: when the server closed it, and what the
/// server sent before (raw bytes; over `wss` the decrypted ones).
struct Ended {
    after: Duration,
    got: Vec<u8>,
}

/// Stalls a connection to `kind`'s port at `addr` the way `stall` says
/// until the server closes it; fails after [`TIMEOUT`].
fn stall(addr: SocketAddr, trust: &Trust, kind: Kind, stall: Stall) -> Ended {
    let started = Instant::now();
    match stall {
        Stall::Silent => {
            let mut stream = raw(addr);
            let got = read_to_end(&mut stream);
            Ended {
                after: started.elapsed(),
                got,
            }
        }
        Stall::HalfClientHello => {
            let config = trust.config().expect("a TLS config");
            let name = rustls::pki_types::ServerName::from(addr.ip());
            let mut tls = rustls::ClientConnection::new(config, name).expect("TLS client");
            let mut hello = Vec::new();
            tls.write_tls(&mut hello).expect("a ClientHello");
            let mut stream = raw(addr);
            stream
                .write_all(&hello[..hello.len() / 2])
                .expect("send half a ClientHello");
            let got = read_to_end(&mut stream);
            Ended {
                after: started.elapsed(),
                got,
            }
        }
        Stall::Slowloris => {
            let (socket, mut stream) = Stream::open(kind, addr, trust);
            let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
            let mut bytes = head.iter().copied().chain(iter::repeat(b'a'));
            // The first byte goes out with the default timeouts, so that
            // over `wss` the TLS handshake is done first.
            let first = bytes.next().expect("a byte");
            stream.write_all(&[first]).expect("send");
            stream.flush().expect("send");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("read timeout");
            let mut got = Vec::new();
            let mut chunk = [0; 1024];
            let mut writing = true;
            loop {
                assert!(
                    started.elapsed() < TIMEOUT,
                    "a slowloris over {kind} was not closed within {TIMEOUT:?}"
                );
                if writing {
                    let byte = bytes.next().expect("bytes for ever");
                    // A failed write: the server has closed; read the end.
                    writing = stream
                        .write_all(&[byte])
                        .and_then(|()| stream.flush())
                        .is_ok();
                }
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
            Ended {
                after: started.elapsed(),
                got,
            }
        }
    }
}

#[test]
fn the_name_timeout_bounds_tls_and_http_handshakes_that_never_finish() {
    let timeout = Duration::from_secs(1);
    let config = ServerConfig::default().name_timeout(timeout);
    // Every stall at once, on one server per I/O mode: one timeout to wait.
    let stalls = [
        (Kind::Tls, Stall::Silent),
        (Kind::Tls, Stall::HalfClientHello),
        (Kind::Wss, Stall::Silent),
        (Kind::Wss, Stall::HalfClientHello),
        (Kind::Wss, Stall::Slowloris),
        (Kind::Ws, Stall::Silent),
        (Kind::Ws, Stall::Slowloris),
    ];
    each_io(config, |server| {
        // Members who joined in time are not touched by it.
        let mut members = members_over_every_transport(&server, "m");
        let ended: Vec<(Kind, Stall, Ended)> = thread::scope(|scope| {
            let probes: Vec<_> = stalls
                .iter()
                .map(|&(kind, how)| {
                    let (addr, trust) = (server.addr_for(kind), server.trust().clone());
                    scope.spawn(move || (kind, how, stall(addr, &trust, kind, how)))
                })
                .collect();
            probes
                .into_iter()
                .map(|probe| probe.join().expect("probe thread"))
                .collect()
        });
        for (kind, how, ended) in ended {
            // The timeout counts from the accept, which follows the connect:
            // it cannot end sooner (half of it is room for a coarse timer).
            assert!(
                ended.after >= timeout / 2,
                "{how:?} over {kind}: closed after {:?}, before the name timeout",
                ended.after
            );
            // At most a TLS alert on a TLS port; at most an HTTP error
            // status on a WebSocket port (no `101`, no chat).
            let got = &ended.got;
            let allowed = match (kind, how) {
                (Kind::Tls, _) | (Kind::Wss, Stall::Silent | Stall::HalfClientHello) => {
                    got.is_empty() || got[0] == 0x15
                }
                _ => got.is_empty() || got.starts_with(b"HTTP/1.1 4"),
            };
            assert!(
                allowed,
                "{how:?} over {kind}: the server sent {:?}",
                String::from_utf8_lossy(got)
            );
        }
        everyone_still_chats(&mut members);
    });
}

#[test]
fn http_paths_methods_and_the_head_limit() {
    each_io(ServerConfig::default(), |server| {
        for kind in [Kind::Ws, Kind::Wss] {
            let page = http(&server, kind, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_eq!(status(&page), 200, "{kind}: GET /");
            let (head, body) = page.split_once("\r\n\r\n").expect("a head and a body");
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\ncontent-type: text/html; charset=utf-8"),
                "{kind}: {head}"
            );
            assert!(
                body.contains(r#"id="line""#) && body.contains(r#"id="log""#),
                "{kind}: the chat page"
            );
            let cases: [(&str, &[u8], u16); 4] = [
                (
                    "another path",
                    b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    404,
                ),
                (
                    "another method",
                    b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
                    405,
                ),
                ("not HTTP", b"hello there\r\n\r\n", 400),
                (
                    "not HTTP, no head end",
                    &[0x16, 3, 1, 0, 0xff, 0, 0, 0],
                    400,
                ),
            ];
            for (what, request, expected) in cases {
                let answer = http(&server, kind, request);
                assert_eq!(status(&answer), expected, "{kind}: {what}");
            }
            // A head past 8 KiB that has not ended is refused at once (well
            // before the name timeout).
            let mut long = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Long: ".to_vec();
            long.extend(iter::repeat_n(b'a', 9 * 1024));
            long.extend_from_slice(b"\r\n");
            let answer = http(&server, kind, &long);
            assert_eq!(status(&answer), 400, "{kind}: a head over 8 KiB");
        }
        // The ports still serve the chat.
        let mut members = members_over_every_transport(&server, "m");
        everyone_still_chats(&mut members);
    });
}

#[test]
fn garbage_on_a_tls_port_costs_that_connection_only() {
    each_io(ServerConfig::default(), |server| {
        let mut members = members_over_every_transport(&server, "m");
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 251) as u8).collect();
        let garbage: [&[u8]; 3] = [
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"NAME\nana\nhello\n",
            &noise,
        ];
        for kind in [Kind::Tls, Kind::Wss] {
            for bytes in garbage {
                let mut stream = raw(server.addr_for(kind));
                // The server may close before all of it is written.
                let _ = stream.write_all(bytes);
                let answer = read_to_end(&mut stream);
                assert!(
                    answer.is_empty() || answer[0] == 0x15,
                    "{kind}: at most a TLS alert, got {answer:?}"
                );
            }
        }
        // Garbage inside an established TLS connection: bytes that are not
        // a TLS record, written under the TLS client. That member's
        // connection ends (it leaves); nobody else's.
        for kind in [Kind::Tls, Kind::Wss] {
            let name = format!("garbled-{kind}");
            let garbled = server.join_over(kind, &name);
            for member in &mut members {
                member.expect(&format!("{name} has joined the chat."));
            }
            garbled
                .stream()
                .write_all(&noise)
                .expect("write under the TLS client");
            for member in &mut members {
                member.expect(&format!("{name} has left the chat."));
            }
            // The server closes it (what it sends last, an alert maybe, is
            // not read as TLS here).
            let mut socket = garbled.stream().try_clone().expect("clone");
            read_to_end(&mut socket);
        }
        everyone_still_chats(&mut members);
        // And newcomers still join over TLS.
        let mut late = server.join_over(Kind::Tls, "late");
        for member in &mut members {
            member.expect("late has joined the chat.");
        }
        late.expect_nothing_pending();
    });
}
