//! Line over TLS with a real client: Debian's `openssl s_client`, in the
//! same room as a plain TCP member; and garbage on the TLS port.
//!
//! Until the event loops run layers, the TLS port is served by the threaded
//! driver through the test-only blocking transport of `tests/common/layered.rs`.
#![cfg(feature = "tls")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;

use chatcore::transport::layer::Layer;
use chatcore::transport::tls::{TlsCertificate, TlsLayer};
use chatcore::{ChatRoom, Server, ServerConfig, Shutdown, TcpTransport};
use common::layered::LayeredTransport;
use common::{Client, TIMEOUT};

/// A TCP and a TLS server sharing one room; stopped on drop.
struct Servers {
    tcp: std::net::SocketAddr,
    tls: std::net::SocketAddr,
    shutdowns: Vec<Shutdown>,
}

impl Servers {
    fn start() -> Self {
        let room = Arc::new(ChatRoom::new());
        let tcp = TcpTransport::bind("127.0.0.1:0").expect("bind");
        let tcp_addr = tcp.local_addr();
        let tcp_server = Server::with_room(tcp, ServerConfig::default(), room.clone());
        let config = TlsCertificate::self_signed()
            .and_then(|c| c.server_config())
            .expect("TLS config");
        let tls = LayeredTransport::bind(Arc::new(move || -> Box<dyn Layer> {
            Box::new(TlsLayer::new(config.clone()).expect("TLS layer"))
        }))
        .expect("bind");
        let tls_addr = tls.local_addr();
        let tls_server = Server::with_room(tls, ServerConfig::default(), room);
        let shutdowns = vec![tcp_server.shutdown_handle(), tls_server.shutdown_handle()];
        thread::spawn(move || tcp_server.run_event_loops(1));
        thread::spawn(move || tls_server.run());
        Servers {
            tcp: tcp_addr,
            tls: tls_addr,
            shutdowns,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for shutdown in &self.shutdowns {
            shutdown.trigger();
        }
    }
}

#[test]
fn openssl_s_client_chats_with_a_tcp_member() {
    let servers = Servers::start();
    let mut bob = Client::connect(servers.tcp);
    bob.expect("NAME");
    bob.send_line("bob");
    bob.expect("Welcome to the chat, bob!");
    bob.expect("bob has joined the chat.");

    let mut openssl = Command::new("openssl")
        .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
        .arg(servers.tls.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl runs (Debian's openssl package)");
    let mut to_server = openssl.stdin.take().expect("piped");
    let from_server = openssl.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from_server).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let expect = |want: &str| {
        let got = lines.recv_timeout(TIMEOUT).expect("a line from openssl");
        assert_eq!(got, want);
    };

    expect("NAME");
    to_server.write_all(b"ana\n").expect("write");
    expect("Welcome to the chat, ana!");
    expect("ana has joined the chat.");
    bob.expect("ana has joined the chat.");
    bob.send_line("hi ana");
    bob.expect("bob: hi ana");
    expect("bob: hi ana");
    to_server.write_all(b"\\w bob psst\r\n").expect("write");
    bob.expect("priv(ana): psst");
    to_server.write_all(b"QUIT\n").expect("write");
    bob.expect("ana has left the chat.");
    assert!(
        lines.recv_timeout(TIMEOUT).is_err(),
        "openssl's output ends after QUIT"
    );
    let _ = openssl.kill();
    let _ = openssl.wait();
}

#[test]
fn garbage_on_the_tls_port_gets_no_line_and_is_closed() {
    let servers = Servers::start();
    let mut stream = TcpStream::connect(servers.tls).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("closed, not timed out");
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "at most a TLS alert: {answer:?}"
    );
    // The server is still there for others.
    let mut bob = Client::connect(servers.tcp);
    bob.expect("NAME");
}
