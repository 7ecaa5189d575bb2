//! What an idle connection's layers keep on the heap, measured with a
//! counting allocator (per thread, so tests in parallel do not mix).
//!
//! The bounds are per idle member: at most 4 KiB over WebSocket and
//! 24 KiB over TLS or WSS, driver included. The layers must leave room for
//! the driver's share (a connection slot, a session, an outbox; about 1 KiB
//! over TCP today), so these tests hold them to tighter figures, and print
//! what they measure (`cargo test --test layer_memory -- --nocapture`).
#![cfg(all(feature = "tls", feature = "websocket"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use chatcore::transport::layer::{Layer, LayerEvent, Stack};
use chatcore::transport::tls::{TlsCertificate, TlsLayer};
use chatcore::transport::ws::WsLayer;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Heap bytes `make` leaves behind in the value it returns: measured live
/// bytes with the value, minus live bytes once it is dropped (what stays is
/// shared, such as a TLS session cache entry).
fn held_by<T>(make: impl FnOnce() -> T) -> (isize, T) {
    let before = live();
    let value = make();
    let with = live() - before;
    (with, value)
}

fn client_config(certificate: &TlsCertificate) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.certificate_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Moves bytes between a rustls client and a server layer until both are
/// quiet; returns the server's plain bytes.
fn pump(client: &mut ClientConnection, server: &mut dyn Layer) -> Vec<u8> {
    let mut plain = BytesMut::new();
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            server
                .receive(&mut BytesMut::from(&to_server[..]), &mut plain)
                .unwrap();
        }
        let mut to_client = BytesMut::new();
        server.poll_transmit(&mut to_client);
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        let mut rest = &to_client[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    plain.to_vec()
}

fn drain(client: &mut ClientConnection) {
    let mut buf = [0; 4096];
    while let Ok(n) = client.reader().read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A masked text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x81, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Some chat traffic through a layer: lines in, lines out.
fn chat_through_ws(ws: &mut dyn Layer, wire_in: &mut Vec<u8>) {
    for line in ["ana", "hello everyone", "\\list"] {
        wire_in.extend(text_frame(line.as_bytes()));
    }
    let mut plain = BytesMut::new();
    ws.receive(&mut BytesMut::from(&wire_in[..]), &mut plain)
        .unwrap();
    wire_in.clear();
    let mut out = BytesMut::new();
    for _ in 0..50 {
        ws.send(b"bob: a line of chat from another member\n", &mut out);
    }
    ws.poll_transmit(&mut out);
}

#[test]
fn an_idle_websocket_layer_keeps_no_heap() {
    let (heap, ws) = held_by(|| {
        let mut ws = WsLayer::new();
        let mut wire = UPGRADE.as_bytes().to_vec();
        chat_through_ws(&mut ws, &mut wire);
        while ws.poll_event().is_some() {}
        ws
    });
    let size = std::mem::size_of_val(&ws);
    println!("idle WsLayer: {size} bytes inline + {heap} bytes of heap");
    assert_eq!(heap, 0);
    assert!(size <= 512);
}

#[test]
fn an_idle_tls_layer_fits_its_share_of_24_kib() {
    let certificate = TlsCertificate::self_signed().unwrap();
    let server_config = certificate.server_config().unwrap();
    let client_config = client_config(&certificate);
    let name = ServerName::try_from("localhost").unwrap();

    for round in 0..3 {
        let mut client = ClientConnection::new(client_config.clone(), name.clone()).unwrap();
        let before = live();
        let mut server = TlsLayer::new(server_config.clone()).unwrap();
        pump(&mut client, &mut server);
        client.writer().write_all(b"ana\nhello everyone\n").unwrap();
        let plain = pump(&mut client, &mut server);
        assert_eq!(plain, b"ana\nhello everyone\n");
        let mut out = BytesMut::new();
        for _ in 0..50 {
            server.send(b"bob: a line of chat from another member\n", &mut out);
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            drain(&mut client);
        }
        drop(out);
        let with_client = live() - before;
        drop(client);
        let heap = live() - before;
        let size = std::mem::size_of_val(&server);
        drop(server);
        let shared = live() - before;
        let held = heap - shared;
        println!(
            "idle TlsLayer (round {round}): {size} bytes inline + {held} bytes of heap \
             ({shared} bytes stay in the shared session cache; client side {})",
            with_client - heap
        );
        assert!(size as isize + held <= 16 * 1024);
    }
}

#[test]
fn an_idle_wss_stack_fits_its_share_of_24_kib() {
    let certificate = TlsCertificate::self_signed().unwrap();
    let server_config = certificate.server_config().unwrap();
    let client_config = client_config(&certificate);
    let name = ServerName::try_from("localhost").unwrap();

    let mut client = ClientConnection::new(client_config, name).unwrap();
    let before = live();
    let mut server = Stack::new(TlsLayer::new(server_config).unwrap(), WsLayer::new());
    pump(&mut client, &mut server);
    client.writer().write_all(UPGRADE.as_bytes()).unwrap();
    for line in ["ana", "hello everyone"] {
        client
            .writer()
            .write_all(&text_frame(line.as_bytes()))
            .unwrap();
    }
    let plain = pump(&mut client, &mut server);
    assert_eq!(plain, b"ana\nhello everyone\n");
    assert_eq!(server.poll_event(), Some(LayerEvent::Established));
    let mut out = BytesMut::new();
    for _ in 0..50 {
        server.send(b"bob: a line of chat from another member\n", &mut out);
    }
    let mut rest = &out[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        drain(&mut client);
    }
    drop(out);
    drop(client);
    let heap = live() - before;
    let size = std::mem::size_of_val(&server);
    drop(server);
    let held = heap - (live() - before);
    println!("idle Stack<TlsLayer, WsLayer>: {size} bytes inline + {held} bytes of heap");
    assert!(size as isize + held <= 16 * 1024);
}
