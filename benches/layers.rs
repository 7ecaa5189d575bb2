//! Per-line cost of the byte layers: WebSocket framing, TLS, and both
//! stacked (`wss`), in each direction, over buffers (no sockets).
//!
//! Each iteration moves a batch of 64 chat lines of 48 bytes (the `\n`
//! included) through a layer that has finished its handshake; throughput is
//! in lines. Outgoing: the server's lines in, wire bytes out. Incoming: a
//! client's wire bytes (made in the untimed setup) in, plain lines out.
//!
//! Run: `cargo bench --bench layers`.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chatcore::transport::layer::{Layer, Stack};
use chatcore::transport::tls::{TlsCertificate, TlsLayer};
use chatcore::transport::ws::WsLayer;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

const LINES: usize = 64;
const LINE: &[u8] = b"ana: a line of chat of forty-eight bytes, yes.\n";

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// The server's lines, as the room log hands them over.
fn batch() -> Vec<u8> {
    LINE.repeat(LINES)
}

/// A masked client text frame per line.
fn client_frames() -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let text = &LINE[..LINE.len() - 1];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame.repeat(LINES)
}

fn upgraded_ws() -> WsLayer {
    let mut ws = WsLayer::new();
    let mut plain = BytesMut::new();
    ws.receive(&mut BytesMut::from(UPGRADE.as_bytes()), &mut plain)
        .expect("upgrade");
    ws.poll_transmit(&mut BytesMut::new());
    ws
}

/// A server layer and a rustls client, handshake done (TLS 1.3).
fn tls_pair<L: Layer>(wrap: impl FnOnce(TlsLayer) -> L) -> (ClientConnection, L) {
    let certificate = TlsCertificate::self_signed().expect("certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certificate.certificate_der().clone())
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
    let tls = TlsLayer::new(certificate.server_config().expect("config")).expect("server");
    let mut server = wrap(tls);
    let mut plain = BytesMut::new();
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).expect("client write");
        }
        if !to_server.is_empty() {
            server
                .receive(&mut BytesMut::from(&to_server[..]), &mut plain)
                .expect("handshake");
        }
        let mut to_client = BytesMut::new();
        server.poll_transmit(&mut to_client);
        let mut rest = &to_client[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).expect("client read");
            client.process_new_packets().expect("client");
        }
    }
    assert!(!client.is_handshaking());
    (client, server)
}

/// What the client sends for `plain`, encrypted.
fn client_records(client: &mut ClientConnection, plain: &[u8]) -> BytesMut {
    client.writer().write_all(plain).expect("client plain");
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("client write");
    }
    BytesMut::from(&wire[..])
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("layers");
    group.throughput(Throughput::Elements(LINES as u64));
    group.measurement_time(Duration::from_secs(3));
    let c = &mut group;

    // WebSocket.
    let mut ws = upgraded_ws();
    let lines = batch();
    let mut wire = BytesMut::with_capacity(16 * 1024);
    c.bench_function("ws/out", |b| {
        b.iter(|| {
            wire.clear();
            ws.send(black_box(&lines), &mut wire);
            black_box(wire.len())
        })
    });
    let frames = client_frames();
    let mut plain = BytesMut::with_capacity(16 * 1024);
    c.bench_function("ws/in", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&frames[..]),
            |input| {
                plain.clear();
                ws.receive(input, &mut plain).expect("frames");
                black_box(plain.len())
            },
            BatchSize::SmallInput,
        )
    });

    // TLS, and WebSocket over TLS.
    let (mut client, mut tls) = tls_pair(|tls| tls);
    c.bench_function("tls/out", |b| {
        b.iter(|| {
            wire.clear();
            tls.send(black_box(&lines), &mut wire);
            black_box(wire.len())
        })
    });
    c.bench_function("tls/in", |b| {
        b.iter_batched_ref(
            || client_records(&mut client, &lines),
            |input| {
                plain.clear();
                tls.receive(input, &mut plain).expect("records");
                black_box(plain.len())
            },
            BatchSize::SmallInput,
        )
    });

    let (mut client, mut wss) = tls_pair(|tls| Stack::new(tls, WsLayer::new()));
    let mut request = client_records(&mut client, UPGRADE.as_bytes());
    wss.receive(&mut request, &mut BytesMut::new())
        .expect("upgrade");
    wss.poll_transmit(&mut BytesMut::new());
    c.bench_function("wss/out", |b| {
        b.iter(|| {
            wire.clear();
            wss.send(black_box(&lines), &mut wire);
            black_box(wire.len())
        })
    });
    c.bench_function("wss/in", |b| {
        b.iter_batched_ref(
            || client_records(&mut client, &frames),
            |input| {
                plain.clear();
                wss.receive(input, &mut plain).expect("records");
                black_box(plain.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
