//! The WebSocket layer over buffers, with no sockets.

use super::frame::OP_PING;
use super::*;
use crate::protocol::{Frame, LineCodec};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn upgrade_request() -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    super::frame::tests::client_frame(fin, opcode, payload, MASK)
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, OP_TEXT, payload)
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, OP_CLOSE, &payload)
}

/// A server frame read back: (fin, opcode, payload).
fn server_frames(mut wire: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        let fin = wire[0] & 0x80 != 0;
        let opcode = wire[0] & 0x0F;
        assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match wire[1] {
            126 => (usize::from(u16::from_be_bytes([wire[2], wire[3]])), 4),
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&wire[2..10]);
                (u64::from_be_bytes(be) as usize, 10)
            }
            len => (usize::from(len), 2),
        };
        frames.push((fin, opcode, wire[at..at + len].to_vec()));
        wire = &wire[at + len..];
    }
    frames
}

/// An upgraded layer with the 101 response already taken.
fn open() -> WsLayer {
    let mut ws = WsLayer::new();
    let mut input = BytesMut::from(upgrade_request().as_bytes());
    let mut plain = BytesMut::new();
    ws.receive(&mut input, &mut plain).unwrap();
    assert!(input.is_empty() && plain.is_empty());
    assert_eq!(ws.poll_event(), Some(LayerEvent::Established));
    assert_eq!(ws.poll_event(), None);
    let mut wire = BytesMut::new();
    ws.poll_transmit(&mut wire);
    let response = String::from_utf8(wire.to_vec()).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    ws
}

/// Feeds `bytes` in one read; returns the plain bytes and the result.
fn feed(ws: &mut WsLayer, bytes: &[u8]) -> (Vec<u8>, Result<(), LayerError>) {
    let mut input = BytesMut::from(bytes);
    let mut plain = BytesMut::new();
    let result = ws.receive(&mut input, &mut plain);
    (plain.to_vec(), result)
}

fn transmitted(ws: &mut WsLayer) -> Vec<(bool, u8, Vec<u8>)> {
    let mut wire = BytesMut::new();
    ws.poll_transmit(&mut wire);
    server_frames(&wire)
}

fn closed_with(result: Result<(), LayerError>) -> u16 {
    match result {
        Err(LayerError::WebSocket(WsError::Closed { code, .. })) => code,
        other => panic!("not a close: {other:?}"),
    }
}

fn close_payload(code: u16) -> (bool, u8, Vec<u8>) {
    (true, OP_CLOSE, code.to_be_bytes().to_vec())
}

#[test]
fn handshake_accepts_the_rfc_sample_key() {
    open();
}

#[test]
fn a_frame_right_after_the_request_head_is_read() {
    let mut ws = WsLayer::new();
    let mut bytes = upgrade_request().into_bytes();
    bytes.extend(text(b"ana"));
    let (plain, result) = feed(&mut ws, &bytes);
    result.unwrap();
    assert_eq!(plain, b"ana\n");
}

#[test]
fn a_message_holds_lines_and_its_final_newline_is_optional() {
    let mut ws = open();
    let (plain, result) = feed(&mut ws, &text(b"one\ntwo\r\nthree"));
    result.unwrap();
    assert_eq!(plain, b"one\ntwo\r\nthree\n");
    let (plain, _) = feed(&mut ws, &text(b"four\n"));
    assert_eq!(plain, b"four\n", "no second newline");
    let (plain, _) = feed(&mut ws, &text(b""));
    assert_eq!(plain, b"", "an empty message is no line");
}

#[test]
fn masking_is_required() {
    let mut ws = open();
    let (plain, result) = feed(&mut ws, &[0x81, 0x02, b'h', b'i']);
    assert_eq!(plain, b"");
    assert_eq!(closed_with(result), 1002);
    assert!(ws.is_finished());
    assert_eq!(transmitted(&mut ws), [close_payload(1002)]);
    // Nothing more is read or sent.
    let (plain, result) = feed(&mut ws, &text(b"late"));
    assert!(plain.is_empty() && result.is_ok());
    let mut wire = BytesMut::new();
    ws.send(b"late\n", &mut wire);
    assert!(wire.is_empty());
}

#[test]
fn fragmented_messages_join_with_pings_between_them() {
    let mut ws = open();
    let mut bytes = frame(false, OP_TEXT, b"hel");
    bytes.extend(frame(false, OP_CONTINUATION, b"lo\nwo"));
    bytes.extend(frame(true, OP_PING, b"are you there"));
    bytes.extend(frame(true, OP_CONTINUATION, b"rld"));
    let (plain, result) = feed(&mut ws, &bytes);
    result.unwrap();
    assert_eq!(plain, b"hello\nworld\n");
    assert!(ws.wants_write());
    assert_eq!(
        transmitted(&mut ws),
        [(true, frame::OP_PONG, b"are you there".to_vec())]
    );
    assert!(!ws.wants_write());
}

#[test]
fn any_split_of_the_input_gives_the_same_lines() {
    let mut bytes = upgrade_request().into_bytes();
    bytes.extend(frame(false, OP_TEXT, "añ€".as_bytes()));
    bytes.extend(frame(true, OP_CONTINUATION, "😀\nb".as_bytes()));
    bytes.extend(text(&vec![b'x'; 300]));
    bytes.extend(frame(true, OP_PING, b"p"));
    bytes.extend(text(b"end"));
    let mut expected = "añ€😀\nb\n".as_bytes().to_vec();
    expected.extend(vec![b'x'; 300]);
    expected.extend(b"\nend\n");

    for chunk in [1, 2, 3, 5, 13, 64] {
        let mut ws = WsLayer::new();
        let (mut input, mut plain) = (BytesMut::new(), BytesMut::new());
        for piece in bytes.chunks(chunk) {
            input.extend_from_slice(piece);
            ws.receive(&mut input, &mut plain).unwrap();
            // Only an unfinished header (or request head) stays behind.
            assert!(
                input.len() <= 14 || !ws.is_established(),
                "{chunk}: {}",
                input.len()
            );
        }
        assert!(input.is_empty());
        assert_eq!(plain.to_vec(), expected, "chunk {chunk}");
    }
}

#[test]
fn an_oversized_line_streams_through_to_the_line_codec_and_the_connection_stays_open() {
    let mut ws = open();
    let mut codec = LineCodec::new(16);
    let mut lines = BytesMut::new();
    let mut frames = Vec::new();
    let mut message = b"short\n".to_vec();
    message.extend(vec![b'y'; 100_000]);
    message.extend(b"\nok");
    let bytes = text(&message);
    let mut input = BytesMut::new();
    for piece in bytes.chunks(4096) {
        input.extend_from_slice(piece);
        ws.receive(&mut input, &mut lines).unwrap();
        assert!(input.is_empty(), "the layer holds none of the payload");
        while let Some(frame) = codec.decode(&lines) {
            frames.push(match frame {
                Frame::Line(line) => line.to_owned(),
                Frame::TooLong => "<too long>".to_owned(),
                Frame::InvalidUtf8 => "<invalid>".to_owned(),
            });
        }
        codec.consume(&mut lines);
        assert!(lines.len() <= 18, "the session holds at most one limit");
    }
    assert_eq!(frames, ["short", "<too long>", "ok"]);
    assert!(!ws.is_finished());
}

#[test]
fn invalid_utf8_closes_with_1007_after_the_lines_before_it() {
    let mut ws = open();
    let (plain, result) = feed(&mut ws, &text(b"good\nba\xffd\nnever"));
    assert_eq!(closed_with(result), 1007);
    assert_eq!(plain, b"good\nba", "the broken line is never completed");
    assert_eq!(transmitted(&mut ws), [close_payload(1007)]);
    assert!(ws.is_finished());
}

#[test]
fn a_character_cut_by_the_end_of_the_message_is_invalid() {
    let mut ws = open();
    let (_, result) = feed(&mut ws, &text(b"caf\xc3"));
    assert_eq!(closed_with(result), 1007);

    let mut ws = open();
    let mut bytes = frame(false, OP_TEXT, b"caf\xc3");
    bytes.extend(frame(true, OP_CONTINUATION, b"\xa9"));
    let (plain, result) = feed(&mut ws, &bytes);
    result.unwrap();
    assert_eq!(plain, "café\n".as_bytes(), "split across frames is fine");
}

#[test]
fn a_binary_message_closes_with_1003_from_its_header() {
    let mut ws = open();
    // A header that announces a 1 GiB binary payload is enough.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 30).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    let (_, result) = feed(&mut ws, &bytes);
    assert_eq!(closed_with(result), 1003);
    assert_eq!(transmitted(&mut ws), [close_payload(1003)]);
}

#[test]
fn broken_message_order_is_a_protocol_error() {
    let mut ws = open();
    let (_, result) = feed(&mut ws, &frame(true, OP_CONTINUATION, b"x"));
    assert_eq!(closed_with(result), 1002);

    let mut ws = open();
    let mut bytes = frame(false, OP_TEXT, b"x");
    bytes.extend(text(b"y"));
    let (_, result) = feed(&mut ws, &bytes);
    assert_eq!(closed_with(result), 1002);
}

#[test]
fn only_the_latest_ping_is_answered_when_pings_pile_up() {
    let mut ws = open();
    let mut bytes = frame(true, OP_PING, b"1");
    bytes.extend(frame(true, OP_PING, b"2"));
    bytes.extend(frame(true, frame::OP_PONG, b"unsolicited"));
    feed(&mut ws, &bytes).1.unwrap();
    assert_eq!(
        transmitted(&mut ws),
        [(true, frame::OP_PONG, b"2".to_vec())]
    );
}

#[test]
fn a_client_close_ends_the_connection_at_once_and_is_echoed() {
    let mut ws = open();
    let mut bytes = text(b"bye");
    bytes.extend(close_frame(1001, b"going"));
    bytes.extend(text(b"after the close"));
    let (plain, result) = feed(&mut ws, &bytes);
    result.unwrap();
    assert_eq!(plain, b"bye\n");
    assert_eq!(
        ws.poll_event(),
        Some(LayerEvent::PeerClosed { code: Some(1001) })
    );
    assert!(ws.is_finished());
    assert_eq!(transmitted(&mut ws), [close_payload(1001)]);
    let mut wire = BytesMut::new();
    ws.send(b"too late\n", &mut wire);
    assert!(wire.is_empty());
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    let mut ws = open();
    feed(&mut ws, &frame(true, OP_CLOSE, b"")).1.unwrap();
    assert_eq!(ws.poll_event(), Some(LayerEvent::PeerClosed { code: None }));
    assert_eq!(transmitted(&mut ws), [(true, OP_CLOSE, vec![])]);
}

#[test]
fn bad_close_frames_are_refused() {
    for (payload, code) in [
        (vec![0x03], 1002),                     // a 1-byte payload
        (1005u16.to_be_bytes().to_vec(), 1002), // a reserved code
        (999u16.to_be_bytes().to_vec(), 1002),
        (vec![0x03, 0xE8, 0xff], 1007), // 1000 with a reason that is not UTF-8
    ] {
        let mut ws = open();
        let (_, result) = feed(&mut ws, &frame(true, OP_CLOSE, &payload));
        assert_eq!(closed_with(result), code, "{payload:x?}");
    }
}

#[test]
fn each_line_is_one_text_message_without_its_newline() {
    let mut ws = open();
    let mut wire = BytesMut::new();
    let long = "z".repeat(200);
    ws.send(format!("NAME\nana: hi\n{long}\n").as_bytes(), &mut wire);
    assert_eq!(
        server_frames(&wire),
        [
            (true, OP_TEXT, b"NAME".to_vec()),
            (true, OP_TEXT, b"ana: hi".to_vec()),
            (true, OP_TEXT, long.into_bytes()),
        ]
    );
}

#[test]
fn a_line_split_across_sends_goes_out_in_fragments() {
    let mut ws = open();
    let mut wire = BytesMut::new();
    ws.send(b"one\ntw", &mut wire);
    ws.send(b"o and", &mut wire);
    ws.send(b" more\n", &mut wire);
    assert_eq!(
        server_frames(&wire),
        [
            (true, OP_TEXT, b"one".to_vec()),
            (false, OP_TEXT, b"tw".to_vec()),
            (false, OP_CONTINUATION, b"o and".to_vec()),
            (true, OP_CONTINUATION, b" more".to_vec()),
        ]
    );
}

#[test]
fn the_servers_close_follows_its_last_line_with_the_reasons_code() {
    for (reason, code) in [
        (CloseReason::Normal, 1000),
        (CloseReason::Shutdown, 1001),
        (CloseReason::Full, 1013),
        (CloseReason::Policy, 1008),
    ] {
        let mut ws = open();
        let mut wire = BytesMut::new();
        ws.send(b"Server is full.\n", &mut wire);
        ws.close(reason);
        assert!(ws.wants_write());
        ws.poll_transmit(&mut wire);
        ws.send(b"after\n", &mut wire);
        assert_eq!(
            server_frames(&wire),
            [
                (true, OP_TEXT, b"Server is full.".to_vec()),
                close_payload(code)
            ]
        );
        assert!(!ws.is_finished(), "waits for the client's close");
    }
}

#[test]
fn after_its_close_the_server_reads_only_for_the_clients_close() {
    let mut ws = open();
    ws.close(CloseReason::Shutdown);
    transmitted(&mut ws);
    let mut bytes = text(b"ignored");
    bytes.extend(frame(true, OP_PING, b"no pong"));
    bytes.extend(close_frame(1001, b""));
    let (plain, result) = feed(&mut ws, &bytes);
    result.unwrap();
    assert_eq!(plain, b"");
    assert_eq!(
        ws.poll_event(),
        Some(LayerEvent::PeerClosed { code: Some(1001) })
    );
    assert!(ws.is_finished());
    assert_eq!(transmitted(&mut ws), [], "no second close, no pong");
}

#[test]
fn the_page_is_served_then_the_connection_ends() {
    let mut ws = WsLayer::new();
    let (plain, result) = feed(&mut ws, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    result.unwrap();
    assert!(plain.is_empty());
    assert!(ws.is_finished());
    assert!(!ws.is_established());
    assert_eq!(ws.poll_event(), None);
    let mut wire = BytesMut::new();
    ws.poll_transmit(&mut wire);
    assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(wire.ends_with(CHAT_PAGE.as_bytes()));
}

#[test]
fn a_refused_request_is_an_error_with_its_status() {
    let mut ws = WsLayer::new();
    let (_, result) = feed(&mut ws, b"GET /nope HTTP/1.1\r\n\r\n");
    assert!(matches!(
        result,
        Err(LayerError::WebSocket(WsError::Refused { status: 404, .. }))
    ));
    assert!(ws.is_finished());
    let mut wire = BytesMut::new();
    ws.poll_transmit(&mut wire);
    assert!(wire.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
}

#[test]
fn an_endless_request_head_is_refused_past_8_kib() {
    let mut ws = WsLayer::new();
    let (mut input, mut plain) = (BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]), BytesMut::new());
    let mut result = Ok(());
    while result.is_ok() && !ws.is_finished() {
        input.extend_from_slice(b"X-Slow: loris\r\n");
        assert!(input.len() <= MAX_REQUEST_HEAD + 15);
        result = ws.receive(&mut input, &mut plain);
    }
    assert!(matches!(
        result,
        Err(LayerError::WebSocket(WsError::Refused { status: 400, .. }))
    ));
}

#[test]
fn closing_before_the_upgrade_sends_nothing() {
    let mut ws = WsLayer::new();
    feed(&mut ws, b"GET /ws HTTP/1.1\r\n").1.unwrap();
    ws.close(CloseReason::Policy);
    assert!(ws.is_finished());
    assert!(!ws.wants_write());
}

#[test]
fn an_idle_layer_keeps_no_buffer() {
    let mut ws = open();
    feed(&mut ws, &frame(false, OP_TEXT, b"half a li"))
        .1
        .unwrap();
    feed(&mut ws, &frame(true, OP_CONTINUATION, b"ne\n"))
        .1
        .unwrap();
    feed(&mut ws, &frame(true, OP_PING, b"x")).1.unwrap();
    let mut wire = BytesMut::new();
    ws.send(b"a line\n", &mut wire);
    ws.poll_transmit(&mut wire);
    assert_eq!(ws.own.capacity(), 0);
    assert!(
        std::mem::size_of::<WsLayer>() <= 512,
        "{}",
        std::mem::size_of::<WsLayer>()
    );
}

#[test]
fn the_page_is_self_contained_and_shows_server_text_as_text() {
    let page = CHAT_PAGE;
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains(r#"id="line""#) && page.contains(r#"id="log""#));
    assert!(page.contains(r#"name="viewport""#), "phone-width screens");
    // Nothing from other hosts: no absolute URLs, no external resources.
    for needle in [
        "http://", "https://", "//cdn", "src=", "href=", "@import", "url(",
    ] {
        assert!(!page.contains(needle), "{needle}");
    }
    // Server text only ever becomes textContent.
    for needle in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!page.contains(needle), "{needle}");
    }
    assert!(page.contains(".textContent = line"));
    assert!(page.contains(r#""wss://" : "ws://""#) && page.contains(r#"location.host + "/ws""#));
}
