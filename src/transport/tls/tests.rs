//! The TLS layer against a rustls client, entirely in memory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use super::*;

/// A client that trusts `certificate`, speaking the given TLS versions.
fn client(
    certificate: &TlsCertificate,
    name: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.certificate_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    ClientConnection::new(Arc::new(config), name).unwrap()
}

/// Moves bytes both ways until neither side has anything to say; the
/// server's plain bytes are appended to `plain`. Returns the server's
/// first error, if any.
fn pump(
    client: &mut ClientConnection,
    server: &mut TlsLayer,
    plain: &mut BytesMut,
) -> Result<(), LayerError> {
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        let mut to_client = BytesMut::new();
        if !to_server.is_empty() {
            server.receive(&mut BytesMut::from(&to_server[..]), plain)?;
        }
        server.poll_transmit(&mut to_client);
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
        let mut rest = &to_client[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    panic!("the handshake never settled");
}

fn client_reads(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match client.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    out
}

fn connected(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (ClientConnection, TlsLayer) {
    let certificate = TlsCertificate::self_signed().unwrap();
    let mut server = TlsLayer::new(certificate.server_config().unwrap()).unwrap();
    let mut client = client(&certificate, "localhost", versions);
    let mut plain = BytesMut::new();
    pump(&mut client, &mut server, &mut plain).unwrap();
    assert!(!client.is_handshaking());
    assert!(server.is_established());
    assert_eq!(server.poll_event(), Some(LayerEvent::Established));
    assert_eq!(server.poll_event(), None);
    assert!(plain.is_empty());
    (client, server)
}

#[test]
fn handshake_then_lines_both_ways_over_tls13_and_tls12() {
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12]] {
        let (mut client, mut server) = connected(versions);
        assert_eq!(
            server.connection().protocol_version(),
            Some(versions[0].version)
        );
        client.writer().write_all(b"ana\nhello\n").unwrap();
        let mut plain = BytesMut::new();
        pump(&mut client, &mut server, &mut plain).unwrap();
        assert_eq!(&plain[..], b"ana\nhello\n");

        let mut wire = BytesMut::new();
        server.send(b"NAME\nWelcome to the chat, ana!\n", &mut wire);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
        }
        client.process_new_packets().unwrap();
        assert_eq!(
            client_reads(&mut client),
            b"NAME\nWelcome to the chat, ana!\n"
        );
    }
}

#[test]
fn a_large_send_arrives_whole() {
    let (mut client, mut server) = connected(&[&rustls::version::TLS13]);
    let line: Vec<u8> = (0..200_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = BytesMut::new();
    server.send(&line, &mut wire);
    assert!(!server.wants_write(), "all of it was handed over");
    let mut rest = &wire[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        got.extend(client_reads(&mut client));
    }
    assert_eq!(got, line);
}

#[test]
fn the_self_signed_certificate_is_valid_for_localhost_and_127_0_0_1() {
    let certificate = TlsCertificate::self_signed().unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let mut server = TlsLayer::new(certificate.server_config().unwrap()).unwrap();
        let mut client = client(&certificate, name, &[&rustls::version::TLS13]);
        pump(&mut client, &mut server, &mut BytesMut::new()).unwrap();
        assert!(server.is_established(), "{name}");
    }
    let mut server = TlsLayer::new(certificate.server_config().unwrap()).unwrap();
    let mut other = client(&certificate, "example.com", &[&rustls::version::TLS13]);
    let mut to_server = Vec::new();
    other.write_tls(&mut to_server).unwrap();
    server
        .receive(&mut BytesMut::from(&to_server[..]), &mut BytesMut::new())
        .unwrap();
    let mut to_client = BytesMut::new();
    server.poll_transmit(&mut to_client);
    other.read_tls(&mut &to_client[..]).unwrap();
    assert!(other.process_new_packets().is_err(), "wrong name refused");
}

#[test]
fn client_close_notify_is_an_end_of_input() {
    let (mut client, mut server) = connected(&[&rustls::version::TLS13]);
    client.writer().write_all(b"bye\n").unwrap();
    client.send_close_notify();
    let mut plain = BytesMut::new();
    pump(&mut client, &mut server, &mut plain).unwrap();
    assert_eq!(&plain[..], b"bye\n");
    assert_eq!(
        server.poll_event(),
        Some(LayerEvent::PeerClosed { code: None })
    );
    assert_eq!(server.poll_event(), None);
    assert!(!server.is_finished(), "queued lines may still go out");
}

#[test]
fn the_servers_close_sends_close_notify_after_the_last_line() {
    let (mut client, mut server) = connected(&[&rustls::version::TLS13]);
    let mut wire = BytesMut::new();
    server.send(b"Server is shutting down.\n", &mut wire);
    server.close(CloseReason::Shutdown);
    assert!(server.wants_write());
    server.poll_transmit(&mut wire);
    server.send(b"late\n", &mut wire);
    let mut rest = &wire[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
    }
    let state = client.process_new_packets().unwrap();
    assert!(state.peer_has_closed());
    assert_eq!(client_reads(&mut client), b"Server is shutting down.\n");
}

#[test]
fn garbage_is_an_error_with_an_alert_and_nothing_else() {
    let certificate = TlsCertificate::self_signed().unwrap();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"ana\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
    ] {
        let mut server = TlsLayer::new(certificate.server_config().unwrap()).unwrap();
        let mut plain = BytesMut::new();
        let result = server.receive(&mut BytesMut::from(garbage), &mut plain);
        assert!(matches!(result, Err(LayerError::Tls(_))), "{garbage:?}");
        assert!(plain.is_empty());
        assert!(server.is_finished());
        assert!(!server.is_established());
        assert_eq!(server.poll_event(), None);
        let mut wire = BytesMut::new();
        server.poll_transmit(&mut wire);
        assert!(wire.is_empty() || wire[0] == 0x15, "an alert at most");
        // Anything after is ignored.
        server
            .receive(&mut BytesMut::from(&b"more"[..]), &mut plain)
            .unwrap();
    }
}

#[test]
fn fingerprint_is_the_sha256_of_the_certificate_in_hex_pairs() {
    let certificate = TlsCertificate::self_signed().unwrap();
    let fingerprint = certificate.fingerprint();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate.certificate_der());
    assert_eq!(&fingerprint[..2], format!("{:02X}", digest.as_ref()[0]));
    assert!(fingerprint
        .split(':')
        .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit())));
    assert!(
        !format!("{certificate:?}").contains("Pkcs8"),
        "the key is not shown"
    );
}

/// PEM text for DER bytes.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A scratch directory for this test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chatcore-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate's PEM and its key's PEM.
fn pem_pair() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        pem("CERTIFICATE", made.cert.der()),
        pem("PRIVATE KEY", &made.signing_key.serialize_der()),
    )
}

#[test]
fn load_pem_reads_a_matching_pair_and_serves_with_it() {
    let scratch = Scratch::new("load");
    let (cert, key) = pem_pair();
    let loaded = TlsCertificate::load_pem(
        &scratch.file("cert.pem", &cert),
        &scratch.file("key.pem", &key),
    )
    .unwrap();
    let mut server = TlsLayer::new(loaded.server_config().unwrap()).unwrap();
    let mut client = client(&loaded, "localhost", &[&rustls::version::TLS13]);
    pump(&mut client, &mut server, &mut BytesMut::new()).unwrap();
    assert!(server.is_established());
}

#[test]
fn load_pem_errors_say_which_file_and_what() {
    let scratch = Scratch::new("errors");
    let (cert, key) = pem_pair();
    let (_, other_key) = pem_pair();
    let cert_file = scratch.file("cert.pem", &cert);
    let key_file = scratch.file("key.pem", &key);
    let missing = scratch.0.join("missing.pem");

    let error = TlsCertificate::load_pem(&missing, &key_file).unwrap_err();
    assert!(
        matches!(error, CertError::ReadCertificate { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let error = TlsCertificate::load_pem(&key_file, &key_file).unwrap_err();
    assert!(
        matches!(error, CertError::NoCertificate { .. }),
        "{error:?}"
    );

    let error = TlsCertificate::load_pem(&cert_file, &cert_file).unwrap_err();
    assert!(matches!(error, CertError::NoKey { .. }), "{error:?}");
    assert!(error.to_string().contains("cert.pem"), "{error}");

    let error = TlsCertificate::load_pem(&cert_file, &missing).unwrap_err();
    assert!(matches!(error, CertError::ReadKey { .. }), "{error:?}");

    let other = scratch.file("other.pem", &other_key);
    let error = TlsCertificate::load_pem(&cert_file, &other).unwrap_err();
    assert!(matches!(error, CertError::Key(_)), "{error:?}");
    assert!(error.to_string().contains("does not match"), "{error}");

    let garbage = scratch.file("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");
    let error = TlsCertificate::load_pem(&garbage, &key_file).unwrap_err();
    assert!(
        matches!(error, CertError::ReadCertificate { .. }),
        "{error:?}"
    );
}
