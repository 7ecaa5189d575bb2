//! The test clients of `tests/common` over every transport: TLS (a rustls
//! client pinning the server's certificate), WS and WSS (tungstenite, a real
//! WebSocket client), against a server with a listener per transport in one
//! room ([`TestServer::with_transports`]).
//!
//! Each test runs over both I/O modes. Shutdown (1001) and the name timeout
//! (1008) over every transport are in tests/shutdown.rs and
//! tests/limits.rs; the limits proper to the TLS and WebSocket ports in
//! tests/transport_limits.rs.
#![cfg(all(feature = "tls", feature = "websocket"))]

mod common;

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

use chatcore::transport::tls::TlsCertificate;
use chatcore::ServerConfig;
use common::client::WS_PATH;
use common::trust::pinned_config;
use common::{
    each_transport, Case, Client, Kind, TestServer, Trust, IO_MODES, TRANSPORTS,
    WEBSOCKET_TRANSPORTS,
};

/// Runs `test` for each I/O mode and WebSocket transport, on a new server
/// with every listener.
fn each_websocket(test: impl FnMut(TestServer, Kind)) {
    each_transport(WEBSOCKET_TRANSPORTS, ServerConfig::default(), test);
}

/// Runs `test` once per I/O mode, on a new server with every listener.
fn each_io(mut test: impl FnMut(TestServer)) {
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        test(TestServer::with_transports(io, ServerConfig::default()));
    }
}

#[test]
fn every_transport_is_listed_and_has_a_listener() {
    assert_eq!(TRANSPORTS, [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss]);
    each_io(|server| {
        assert_eq!(server.kinds(), TRANSPORTS);
        assert_eq!(server.addr_for(Kind::Tcp), server.addr);
        for &kind in TRANSPORTS {
            assert!(server.addr_for(kind).ip().is_loopback());
        }
    });
}

#[test]
fn a_short_chat_over_each_transport_with_a_tcp_member() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut bob = server.join("bob");
        let mut ana = server.join_over(kind, "ana");
        bob.expect("ana has joined the chat.");

        ana.send_line("hello over the wire");
        ana.expect("ana: hello over the wire");
        bob.expect("ana: hello over the wire");

        bob.send_line("\\w ana psst");
        ana.expect("priv(bob): psst");
        ana.send_line("\\w bob back at you");
        bob.expect("priv(ana): back at you");
        ana.send_line("\\list");
        ana.expect("Users online (2): bob, ana");

        ana.send_line("QUIT");
        ana.expect_closed_with(1000);
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn a_binary_message_closes_with_1003() {
    each_websocket(|server, kind| {
        let mut bob = server.join("bob");
        let mut ana = server.join_over(kind, "ana");
        bob.expect("ana has joined the chat.");
        ana.send_message(Message::binary(b"ana: hi".to_vec()));
        assert_eq!(ana.expect_closed_code(), Some(1003), "{kind}");
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn invalid_utf8_closes_with_1007_after_the_lines_before_it() {
    each_websocket(|server, kind| {
        let mut bob = server.join("bob");
        let mut ana = server.join_over(kind, "ana");
        bob.expect("ana has joined the chat.");
        // `send` puts raw bytes in one text frame: the client does not
        // check them, the server must.
        ana.send(b"fine\nnot \xff fine\n");
        // The line before the bad byte counts; whether its echo reaches
        // ana before her close frame is the driver's choice.
        let lines = ana.read_until_closed();
        assert!(
            lines.is_empty() || lines == ["ana: fine"],
            "{kind}: {lines:?}"
        );
        assert_eq!(ana.close_code(), Some(1007), "{kind}");
        bob.expect("ana: fine");
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn pings_are_answered_with_pongs_before_and_after_the_name() {
    each_websocket(|server, kind| {
        let mut ana = server.connect_over(kind);
        ana.ping(b"before the name");
        let before = ana.expect_pong(b"before the name");
        assert!(before.len() <= 1, "{kind}: {before:?}");
        if before.is_empty() {
            ana.expect("NAME");
        } else {
            assert_eq!(before, ["NAME"], "{kind}");
        }
        ana.send_line("ana");
        ana.ping(b"a member now");
        let lines = ana.expect_pong(b"a member now");
        let mut lines = lines.into_iter();
        let mut next = || lines.next().unwrap_or_else(|| ana.line());
        assert_eq!(next(), "Welcome to the chat, ana!", "{kind}");
        assert_eq!(next(), "ana has joined the chat.", "{kind}");
        ana.name = "ana".into();
        ana.expect_nothing_pending();
    });
}

#[test]
fn one_message_may_hold_several_lines() {
    each_websocket(|server, kind| {
        let mut ana = server.join_over(kind, "ana");
        ana.send(b"one\ntwo\r\nthree");
        ana.expect("ana: one");
        ana.expect("ana: two");
        ana.expect("ana: three");
        ana.expect_nothing_pending();
    });
}

#[test]
fn a_fragmented_message_is_one_message() {
    each_websocket(|server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let first = Frame::message(b"hel".to_vec(), OpCode::Data(Data::Text), false);
        let last = Frame::message(b"lo".to_vec(), OpCode::Data(Data::Continue), true);
        ana.send_message(Message::Frame(first));
        ana.ping(b"between the fragments");
        ana.send_message(Message::Frame(last));
        // The pong may come before or after the line the message makes.
        let before = ana.expect_pong(b"between the fragments");
        if before.is_empty() {
            ana.expect("ana: hello");
        } else {
            assert_eq!(before, ["ana: hello"], "{kind}");
        }
        ana.expect_nothing_pending();
    });
}

#[test]
fn a_client_close_frame_leaves_and_is_answered() {
    each_websocket(|server, kind| {
        let mut bob = server.join("bob");
        let mut ana = server.join_over(kind, "ana");
        bob.expect("ana has joined the chat.");
        ana.shutdown_write();
        assert_eq!(
            ana.expect_closed_code(),
            Some(1000),
            "{kind}: the echoed code"
        );
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn a_tls_close_notify_leaves_like_a_tcp_half_close() {
    each_io(|server| {
        let mut bob = server.join("bob");
        let mut ana = server.join_over(Kind::Tls, "ana");
        bob.expect("ana has joined the chat.");
        ana.shutdown_write();
        ana.expect_closed();
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn tls_1_2_works_too() {
    each_io(|server| {
        let pinned = server_certificate(&server);
        let trust = Trust::with_config(pinned_config(pinned, &[&rustls::version::TLS12]));
        for kind in [Kind::Tls, Kind::Wss] {
            let mut ana = Client::connect_over(kind, server.addr_for(kind), &trust);
            ana.expect("NAME");
            ana.send_line("ana");
            ana.expect("Welcome to the chat, ana!");
            ana.expect("ana has joined the chat.");
            ana.send_line("QUIT");
            ana.expect_closed_with(1000);
        }
    });
}

#[test]
fn a_client_pinning_another_certificate_is_refused() {
    each_io(|server| {
        let other = TlsCertificate::self_signed().expect("certificate");
        let trust = Trust::pinned(other.certificate_der().clone());
        let config = trust.config().expect("a TLS config");
        let name = rustls::pki_types::ServerName::from(server.addr_for(Kind::Tls).ip());
        let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
        let tcp = std::net::TcpStream::connect(server.addr_for(Kind::Tls)).expect("connect");
        tcp.set_read_timeout(Some(common::TIMEOUT))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 64];
        let error = std::io::Read::read(&mut tls, &mut buf).expect_err("the handshake must fail");
        assert!(
            error.to_string().contains("UnknownIssuer") || error.to_string().contains("issuer"),
            "{error}"
        );
    });
}

#[test]
fn the_websocket_upgrade_elsewhere_than_ws_is_refused() {
    each_io(|server| {
        for kind in WEBSOCKET_TRANSPORTS.iter().copied() {
            let addr = server.addr_for(kind);
            assert!(Client::try_connect_over(kind, addr, server.trust(), WS_PATH).is_ok());
            match Client::try_connect_over(kind, addr, server.trust(), "/chat") {
                Err(status) => assert_eq!(status, 404, "{kind}"),
                Ok(_) => panic!("{kind}: /chat upgraded"),
            }
        }
    });
}

/// The certificate the server presents, as a TLS client sees it.
fn server_certificate(server: &TestServer) -> rustls::pki_types::CertificateDer<'static> {
    let config = server.trust().config().expect("a TLS config");
    let name = rustls::pki_types::ServerName::from(server.addr_for(Kind::Tls).ip());
    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
    let tcp = std::net::TcpStream::connect(server.addr_for(Kind::Tls)).expect("connect");
    tcp.set_read_timeout(Some(common::TIMEOUT))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = [0u8; 5];
    std::io::Read::read_exact(&mut tls, &mut buf).expect("NAME");
    assert_eq!(&buf, b"NAME\n");
    tls.conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server's certificate")
        .clone()
        .into_owned()
}
