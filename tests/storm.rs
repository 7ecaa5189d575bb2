//! Connect storms over real TCP: many clients connect at once, and every one
//! of them gets `NAME` (PROTOCOL.md: `NAME` is the server's first line on
//! every connection).
//!
//! With std's fixed listen backlog of 128, a burst overflows the kernel's
//! queues: the server never sees the overflowing connections, while their
//! clients believe they are connected and wait for `NAME` for ever. These
//! tests fail that way on a listener bound with a backlog of 128.

mod common;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use common::{Io, TestServer, TIMEOUT};

/// Clients in the storm: far past 128, well within the listen backlog the
/// server asks for (the system's maximum; 4096 on current Linux).
const CLIENTS: usize = 1_500;
/// File descriptors the test needs per client: the client's socket and the
/// server's (two with the threaded driver, one per half), plus slack.
const FDS_PER_CLIENT: u64 = 3;
const SPARE_FDS: u64 = 256;

#[test]
fn connect_storm_every_client_gets_name_event_loops() {
    storm(Io::Events);
}

#[test]
fn connect_storm_every_client_gets_name_threads() {
    storm(Io::Threads);
}

/// Opens `clients` non-blocking connections from one thread as fast as it
/// can, then checks that each one reads `NAME` within [`TIMEOUT`] of the
/// first connect.
fn storm(io: Io) {
    let clients = clients_for_this_system();
    raise_fd_limit(clients);
    let mut server = TestServer::start(io);
    let mut storm = Storm::connect(server.addr, clients);
    let deadline = storm.started + TIMEOUT;
    storm.read_names_until(deadline);
    let without_name = storm.without_name();
    assert!(
        without_name.is_empty(),
        "{io:?}: {} of {clients} clients got no NAME within {TIMEOUT:?}; first: {:?}",
        without_name.len(),
        &without_name[..without_name.len().min(5)]
    );
    drop(storm);
    server.stop().expect("the server stopped cleanly");
}

/// [`CLIENTS`], or the kernel's cap on a listen backlog if that is lower (a
/// burst larger than the cap can overflow any listener; the server can do no
/// better than the system's maximum).
fn clients_for_this_system() -> usize {
    match std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(cap) if cap < CLIENTS => {
                eprintln!("net.core.somaxconn is {cap}: a storm of {cap} clients");
                cap
            }
            _ => CLIENTS,
        },
        Err(_) => CLIENTS,
    }
}

/// Raises the open-file soft limit to the hard limit; fails the test if that
/// leaves too few for the storm.
fn raise_fd_limit(clients: usize) {
    let needed = clients as u64 * FDS_PER_CLIENT + SPARE_FDS;
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
    assert!(
        limit >= needed,
        "the storm needs {needed} open files; the hard limit allows {limit}"
    );
}

/// One client of the storm.
struct StormClient {
    stream: TcpStream,
    /// What it has read so far.
    got: Vec<u8>,
    /// Why it will never read `NAME`, if it failed.
    failed: Option<String>,
}

impl StormClient {
    fn has_line(&self) -> bool {
        self.got.contains(&b'\n')
    }
}

/// Clients connecting at once, driven by one poll.
struct Storm {
    poll: Poll,
    clients: Vec<StormClient>,
    started: Instant,
}

impl Storm {
    /// Starts `n` non-blocking connects back to back: no client waits for
    /// another's handshake, as in a real burst.
    fn connect(addr: SocketAddr, n: usize) -> Self {
        let poll = Poll::new().expect("poll");
        let started = Instant::now();
        let clients = (0..n)
            .map(|i| {
                let mut stream = TcpStream::connect(addr).expect("start a connect");
                poll.registry()
                    .register(&mut stream, Token(i), Interest::READABLE)
                    .expect("register a client");
                StormClient {
                    stream,
                    got: Vec::new(),
                    failed: None,
                }
            })
            .collect();
        Storm {
            poll,
            clients,
            started,
        }
    }

    /// Reads what arrives until every client has a line (or failed), or
    /// `deadline` passes.
    fn read_names_until(&mut self, deadline: Instant) {
        let mut events = Events::with_capacity(1024);
        let mut waiting = self.clients.len();
        let mut chunk = [0; 64];
        while waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.poll.poll(&mut events, Some(left)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("poll failed: {e}"),
            }
            for event in events.iter() {
                let client = &mut self.clients[event.token().0];
                if client.has_line() || client.failed.is_some() {
                    continue;
                }
                loop {
                    match client.stream.read(&mut chunk) {
                        Ok(0) => {
                            client.failed = Some(format!("closed after {:?}", client.got));
                            break;
                        }
                        Ok(n) => client.got.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            client.failed = Some(format!("read failed: {e}"));
                            break;
                        }
                    }
                }
                if client.has_line() || client.failed.is_some() {
                    waiting -= 1;
                }
            }
        }
    }

    /// Who has not read `NAME` as its first line, and why.
    fn without_name(&self) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, client)| {
                if let Some(why) = &client.failed {
                    return Some(format!("client {i}: {why}"));
                }
                let first = client.got.split(|&b| b == b'\n').next().unwrap_or(&[]);
                match client.has_line() {
                    true if first == b"NAME" => None,
                    true => Some(format!(
                        "client {i}: got {:?}",
                        String::from_utf8_lossy(first)
                    )),
                    false => Some(format!("client {i}: no line (read {:?})", client.got)),
                }
            })
            .collect()
    }
}
