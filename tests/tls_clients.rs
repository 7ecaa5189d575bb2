//! Line over TLS with a real client: Debian's `openssl s_client`, in the
//! same room as a plain TCP member, over both I/O modes. (Garbage on the TLS
//! port: tests/transport_limits.rs.)
#![cfg(feature = "tls")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use chatcore::ServerConfig;
use common::{Case, Kind, TestServer, IO_MODES, TIMEOUT};

#[test]
fn openssl_s_client_chats_with_a_tcp_member() {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        openssl_chat(io);
    }
}

fn openssl_chat(io: common::Io) {
    let server = TestServer::with_transports(io, ServerConfig::default());
    let mut bob = server.join("bob");

    let mut openssl = Command::new("openssl")
        .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
        .arg(server.addr_for(Kind::Tls).to_string())
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
