//! `--history <n>` on a single server: a newcomer gets the room's latest
//! public lines right after its welcome, over both drivers, in process and
//! as `tcp_server --history`.

mod common;
mod procs;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use chatcore::{ChatRoom, Server, ServerConfig, ServerError, Shutdown, TcpTransport};
use common::{Client, Io, IO_MODES, TIMEOUT};
use procs::ServerProc;

/// A server whose room replays `history` lines, on its own thread.
struct HistoryServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    stopped: mpsc::Receiver<Result<(), ServerError>>,
}

impl HistoryServer {
    fn start(io: Io, history: usize) -> Self {
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = transport.local_addr();
        let room = Arc::new(ChatRoom::with_history(history));
        let server = Server::with_room(transport, ServerConfig::default(), room);
        let shutdown = server.shutdown_handle();
        let (tx, stopped) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(match io {
                Io::Threads => server.run(),
                Io::Events => server.run_event_loops(2),
            });
        });
        HistoryServer {
            addr,
            shutdown,
            stopped,
        }
    }
}

impl Drop for HistoryServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.stopped.recv_timeout(TIMEOUT);
    }
}

/// Joins as `name` and returns every line up to its own join notice
/// (which is left out), the welcome first.
fn join(addr: SocketAddr, name: &str) -> (Client, Vec<String>) {
    let mut client = Client::connect(addr);
    client.name = name.to_owned();
    client.expect("NAME");
    client.send_line(name);
    let lines = client.read_until(&format!("{name} has joined the chat."));
    (client, lines)
}

/// Ana says `one` to `five` and whispers to herself in between; returns
/// her, her lines read.
fn ana_talks(addr: SocketAddr) -> Client {
    let (mut ana, _) = join(addr, "ana");
    for text in ["one", "two", "three"] {
        ana.send_line(text);
    }
    ana.send_line("\\w ana secret");
    ana.send_line("four");
    ana.send_line("five");
    for line in ["ana: one", "ana: two", "ana: three", "priv(ana): secret"] {
        ana.expect(line);
    }
    ana.expect("ana: four");
    ana.expect("ana: five");
    ana
}

#[test]
fn a_newcomer_gets_the_latest_public_lines_between_its_welcome_and_its_join() {
    for &io in IO_MODES {
        let server = HistoryServer::start(io, 3);
        let mut ana = ana_talks(server.addr);
        let (mut bob, got) = join(server.addr, "bob");
        assert_eq!(
            got,
            [
                "Welcome to the chat, bob!",
                "ana: three",
                "ana: four",
                "ana: five"
            ],
            "{io:?}"
        );
        ana.expect("bob has joined the chat.");
        // Then the room as usual: no replay twice.
        ana.send_line("six");
        bob.expect("ana: six");
        ana.expect("ana: six");
    }
}

#[test]
fn without_history_a_newcomer_gets_no_earlier_line() {
    for &io in IO_MODES {
        let server = HistoryServer::start(io, 0);
        let _ana = ana_talks(server.addr);
        let (_bob, got) = join(server.addr, "bob");
        assert_eq!(got, ["Welcome to the chat, bob!"], "{io:?}");
    }
}

#[test]
fn tcp_server_history_flag_replays_lines() {
    let mut server = ServerProc::start("tcp_server --history 2", &["--history", "2"]);
    let addr = server.addr();
    let _ana = ana_talks(addr);
    let (_bob, got) = join(addr, "bob");
    assert_eq!(got, ["Welcome to the chat, bob!", "ana: four", "ana: five"]);
    server.signal("TERM");
    server.expect_exit(0);
}

/// Without the `nats` feature, `--nats` is refused at start, saying how to
/// build with it.
#[cfg(not(feature = "nats"))]
#[test]
fn tcp_server_nats_without_the_feature_says_how_to_get_it() {
    let mut server = ServerProc::start("tcp_server --nats", &["--nats", "nats://127.0.0.1:4222"]);
    assert!(server.addr.is_none(), "it must not listen");
    server.expect_exit(1);
    assert!(
        server.stderr().contains("--features nats"),
        "{}",
        server.stderr()
    );
}
