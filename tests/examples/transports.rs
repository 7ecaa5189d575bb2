//! `tcp_server`'s extra listeners (PROTOCOL.md, "Transports"): the lines
//! that announce them, the certificate flags and their errors, and real
//! clients over each, in one room with a TCP member: Debian's
//! `openssl s_client` over `--tls-addr`, a WebSocket client over
//! `--ws-addr` and `--wss-addr`. Certificates for `--tls-cert` are made by
//! `openssl req`, so that the files are what a user would have.

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::common::{Client, Kind, Trust};
use crate::openssl::{
    fingerprint_of, make_certificate, path_str, s_client, served_certificate, TempDir,
};
use crate::process::{example, Proc, ServerProc};
use crate::SERVER_IO;

/// Every extra listener, its flag on 127.0.0.1 port 0.
const ALL_LISTENERS: &[&str] = &[
    "--tls-addr",
    "127.0.0.1:0",
    "--ws-addr",
    "127.0.0.1:0",
    "--wss-addr",
    "127.0.0.1:0",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The fingerprint in the server's log line about its certificate.
fn logged_fingerprint(log: &str) -> Option<String> {
    let at = log.find("SHA-256 fingerprint ")? + "SHA-256 fingerprint ".len();
    Some(log[at..].chars().take(32 * 3 - 1).collect())
}

/// `ana` over `openssl s_client` (`openssl`) and `bob` over TCP chat:
/// public lines and a whisper each way, then `ana` quits.
fn chat_over_s_client(mut openssl: Proc, bob: &mut Client) {
    openssl.expect_lines(&["NAME"]);
    openssl.write_stdin("ana\n");
    openssl.expect_lines(&["Welcome to the chat, ana!", "ana has joined the chat."]);
    bob.expect("ana has joined the chat.");
    bob.send_line("hi ana");
    bob.expect("bob: hi ana");
    openssl.expect_lines(&["bob: hi ana"]);
    bob.send_line("\\w ana psst from tcp");
    openssl.expect_lines(&["priv(bob): psst from tcp"]);
    openssl.write_stdin("hello bob\n\\w bob psst over tls\n");
    openssl.expect_lines(&["ana: hello bob"]);
    bob.expect("ana: hello bob");
    bob.expect("priv(ana): psst over tls");
    openssl.write_stdin("QUIT\n");
    bob.expect("ana has left the chat.");
    openssl.expect_stdout_end();
    openssl.wait_exit();
}

/// `ana` over WebSocket (`ws`, `wss`) and `bob` over TCP chat: public
/// lines and a whisper each way.
fn chat_over_websocket(ana: &mut Client, bob: &mut Client) {
    ana.expect("NAME");
    ana.send_line("ana");
    ana.expect("Welcome to the chat, ana!");
    ana.expect("ana has joined the chat.");
    bob.expect("ana has joined the chat.");
    bob.send_line("hi ana");
    bob.expect("bob: hi ana");
    ana.expect("bob: hi ana");
    ana.send_line("hello bob");
    ana.expect("ana: hello bob");
    bob.expect("ana: hello bob");
    ana.send_line("\\w bob psst over websocket");
    bob.expect("priv(ana): psst over websocket");
    bob.send_line("\\w ana psst from tcp");
    ana.expect("priv(bob): psst from tcp");
}

/// Starts `tcp_server` with `flags` directly, expecting it to refuse them:
/// no line on standard output, exit status 1. Returns its standard error.
fn refused_start(flags: &[&str]) -> String {
    let mut command = Command::new(example("tcp_server"));
    command.args(flags).env_remove("RUST_LOG");
    let mut server = Proc::spawn(&format!("tcp_server {flags:?}"), command);
    server.expect_stdout_end();
    server.expect_exit(1);
    server.stderr()
}

// ---------------------------------------------------------------------------
// The listener lines and the certificate flags
// ---------------------------------------------------------------------------

#[test]
fn server_prints_a_line_per_extra_listener_in_order() {
    for io in SERVER_IO {
        // Flags in the reverse order: the lines still come TLS, WebSocket,
        // secure WebSocket (ServerProc checks each line's label).
        let mut server = ServerProc::start(
            io,
            &[
                "--wss-addr",
                "127.0.0.1:0",
                "--ws-addr",
                "127.0.0.1:0",
                "--tls-addr",
                "127.0.0.1:0",
            ],
        );
        let labels: Vec<&str> = server.listeners.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["TLS", "WebSocket", "Secure WebSocket"]);
        let mut ports: Vec<u16> = server.listeners.iter().map(|(_, a)| a.port()).collect();
        ports.push(server.addr.port());
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            4,
            "four different ports: {:?}",
            server.listeners
        );
        for (label, addr) in &server.listeners {
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("{label} at {addr}: {e}"));
        }
        server.proc.signal("TERM");
        server.proc.expect_stdout_end();
        server.proc.expect_exit(0);

        // Only the listeners asked for.
        let mut server = ServerProc::start(io, &["--ws-addr", "127.0.0.1:0"]);
        let labels: Vec<&str> = server.listeners.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["WebSocket"]);
        server.proc.signal("TERM");
        server.proc.expect_stdout_end();
        server.proc.expect_exit(0);
    }
}

#[test]
fn server_makes_a_certificate_only_for_a_tls_listener() {
    let mut server = ServerProc::start("events", &["--ws-addr", "127.0.0.1:0"]);
    server.proc.signal("TERM");
    server.proc.expect_exit(0);
    let log = server.proc.stderr();
    assert!(log.contains("tcp_server"), "expected log lines: {log:?}");
    assert!(!log.contains("certificate"), "no TLS listener, yet:\n{log}");

    for flag in ["--tls-addr", "--wss-addr"] {
        let mut server = ServerProc::start("events", &[flag, "127.0.0.1:0"]);
        server.proc.signal("TERM");
        server.proc.expect_exit(0);
        let log = server.proc.stderr();
        assert!(log.contains("self-signed"), "{flag}:\n{log}");
        let fingerprint = logged_fingerprint(&log)
            .unwrap_or_else(|| panic!("{flag}: no fingerprint logged:\n{log}"));
        let pairs: Vec<&str> = fingerprint.split(':').collect();
        assert_eq!(pairs.len(), 32, "{fingerprint}");
        assert!(
            pairs
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())),
            "{fingerprint}"
        );
    }
}

#[test]
fn server_exits_1_with_a_certificate_and_no_key_or_the_reverse() {
    let dir = TempDir::new();
    let (cert, key) = make_certificate(&dir, "server");
    let log = refused_start(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-addr",
        "127.0.0.1:0",
        "--tls-cert",
        path_str(&cert),
    ]);
    assert!(log.contains("--tls-cert needs --tls-key"), "{log}");
    let log = refused_start(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-addr",
        "127.0.0.1:0",
        "--tls-key",
        path_str(&key),
    ]);
    assert!(log.contains("--tls-key needs --tls-cert"), "{log}");
}

#[test]
fn server_exits_1_when_the_certificate_or_key_is_bad_before_binding_anything() {
    let dir = TempDir::new();
    let (cert, key) = make_certificate(&dir, "server");
    let (_, other_key) = make_certificate(&dir, "other");
    let missing = dir.path("missing.pem");
    // The TCP port is taken: had the server bound anything before reading
    // its certificate, it would complain of the port instead.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let taken = taken.local_addr().expect("its address").to_string();
    let cases = [
        (
            &missing,
            &key,
            format!(
                "cannot read the TLS certificate file '{}'",
                missing.display()
            ),
        ),
        (
            &cert,
            &missing,
            format!("cannot read the TLS key file '{}'", missing.display()),
        ),
        (
            &key,
            &key,
            format!(
                "the TLS certificate file '{}' holds no certificate",
                key.display()
            ),
        ),
        (
            &cert,
            &cert,
            format!("the TLS key file '{}' holds no private key", cert.display()),
        ),
        (
            &cert,
            &other_key,
            "the TLS key does not match the certificate".to_owned(),
        ),
    ];
    for (cert, key, message) in cases {
        let log = refused_start(&[
            "--addr",
            &taken,
            "--tls-addr",
            "127.0.0.1:0",
            "--tls-cert",
            path_str(cert),
            "--tls-key",
            path_str(key),
        ]);
        assert!(log.contains(&message), "expected {message:?} in:\n{log}");
        assert!(!log.contains("cannot listen"), "bound before: {log}");
    }
}

// ---------------------------------------------------------------------------
// Real clients over each listener, one room with a TCP member
// ---------------------------------------------------------------------------

#[test]
fn openssl_s_client_chats_with_a_tcp_member_over_tls_addr() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--tls-addr", "127.0.0.1:0"]);
        let mut bob = server.join("bob");
        let openssl = s_client(server.listener("TLS"), &[]);
        chat_over_s_client(openssl, &mut bob);
    }
}

#[test]
fn server_logs_the_fingerprint_of_the_self_signed_certificate_it_serves() {
    let dir = TempDir::new();
    let mut server = ServerProc::start("events", &["--tls-addr", "127.0.0.1:0"]);
    let served = served_certificate(&dir, server.listener("TLS"));
    server.proc.signal("TERM");
    server.proc.expect_exit(0);
    let log = server.proc.stderr();
    assert_eq!(
        logged_fingerprint(&log).as_deref(),
        Some(fingerprint_of(&served).as_str()),
        "{log}"
    );
}

#[test]
fn a_websocket_member_chats_with_a_tcp_member_over_ws_addr() {
    for io in SERVER_IO {
        let mut server = ServerProc::start(io, &["--ws-addr", "127.0.0.1:0"]);
        let mut bob = server.join("bob");
        let mut ana =
            Client::connect_over(Kind::Ws, server.listener("WebSocket"), &Trust::default());
        chat_over_websocket(&mut ana, &mut bob);
        server.proc.signal("TERM");
        ana.expect("Server is shutting down.");
        ana.expect_closed_with(1001);
        bob.expect("Server is shutting down.");
        bob.expect_closed();
        server.proc.expect_exit(0);
    }
}

#[test]
fn a_pem_certificate_from_files_is_served_and_clients_verify_it() {
    let dir = TempDir::new();
    let (cert, key) = make_certificate(&dir, "server");
    let (other_cert, _) = make_certificate(&dir, "other");
    let der: CertificateDer<'static> =
        PemObject::from_pem_file(&cert).expect("the certificate as DER");
    for io in SERVER_IO {
        let mut flags = vec!["--tls-cert", path_str(&cert), "--tls-key", path_str(&key)];
        flags.extend_from_slice(ALL_LISTENERS);
        let mut server = ServerProc::start(io, &flags);
        let mut bob = server.join("bob");

        // openssl verifies the chain against the file and the name.
        let verified = ["-CAfile", path_str(&cert), "-verify_return_error"];
        let mut strict = verified.to_vec();
        strict.extend(["-verify_hostname", "localhost"]);
        chat_over_s_client(s_client(server.listener("TLS"), &strict), &mut bob);
        // ... and refuses the server against another certificate.
        let mut wrong = s_client(
            server.listener("TLS"),
            &["-CAfile", path_str(&other_cert), "-verify_return_error"],
        );
        wrong.expect_stdout_end();
        assert!(!wrong.wait_exit().success(), "openssl accepted the server");

        // A WebSocket client over TLS that trusts exactly this certificate.
        let trust = Trust::pinned(der.clone());
        let mut ana = Client::connect_over(Kind::Wss, server.listener("Secure WebSocket"), &trust);
        chat_over_websocket(&mut ana, &mut bob);
        ana.send_line("QUIT");
        ana.expect_closed_with(1000);
        bob.expect("ana has left the chat.");

        server.proc.signal("TERM");
        server.proc.expect_exit(0);
        let log = server.proc.stderr();
        assert_eq!(
            logged_fingerprint(&log).as_deref(),
            Some(fingerprint_of(&cert).as_str()),
            "{log}"
        );
        assert!(!log.contains("self-signed"), "{log}");
    }
}
