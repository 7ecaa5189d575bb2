//! Framing over every transport: `\r\n`, a `\r` inside a line, the
//! maximum line length, several lines per write (over WebSocket, per
//! message), and lines left unfinished when a connection ends. Over the byte
//! streams (TCP, TLS) also invalid UTF-8 and lines split across writes;
//! over WebSocket, lines split across the fragments of a message.
mod common;

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

use chatcore::ServerConfig;
use common::{
    each_transport, Client, Kind, TestServer, LINE_TRANSPORTS, TRANSPORTS, WEBSOCKET_TRANSPORTS,
};

/// `ana` and `bob`, joined over `kind`, with `bob`'s join notice read by
/// `ana`.
fn pair(server: &TestServer, kind: Kind) -> (Client, Client) {
    let mut ana = server.join_over(kind, "ana");
    let bob = server.join_over(kind, "bob");
    ana.expect("bob has joined the chat.");
    (ana, bob)
}

/// Limits with lines of at most 16 bytes.
fn small_lines() -> ServerConfig {
    ServerConfig::default().max_line(16)
}

/// Makes each `send` go out as its own TCP segment, so that "split across
/// writes" really reaches the server in pieces (as far as TCP allows).
fn no_delay(client: &Client) {
    client
        .stream()
        .set_nodelay(true)
        .expect("set TCP_NODELAY on the test client");
}

#[test]
fn cr_before_lf_is_dropped() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"hi\r\n");
        ana.expect("ana: hi");
        bob.expect("ana: hi");
    });
}

#[test]
fn cr_inside_a_line_is_kept_and_rendered_as_replacement_character() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"a\rb\n");
        ana.expect("ana: a\u{fffd}b");
        bob.expect("ana: a\u{fffd}b");
        // Only the one `\r` right before `\n` is dropped.
        ana.send(b"d\r\r\n");
        ana.expect("ana: d\u{fffd}");
        bob.expect("ana: d\u{fffd}");
        ana.send(b"\rlead\n");
        ana.expect("ana: \u{fffd}lead");
        bob.expect("ana: \u{fffd}lead");
    });
}

#[test]
fn cr_inside_a_whisper_is_rendered_as_replacement_character() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"\\w bob x\ry\r\n");
        bob.expect("priv(ana): x\u{fffd}y");
    });
}

#[test]
fn lone_cr_line_is_public_text_not_blank() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        // `\r\r\n`: one `\r` dropped, the other kept: not a blank line.
        ana.send(b"\r\r\n");
        ana.expect("ana: \u{fffd}");
        bob.expect("ana: \u{fffd}");
    });
}

#[test]
fn quit_with_crlf_quits() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"QUIT\r\n");
        ana.expect_closed_with(1000);
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn commands_with_crlf_work() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"\\list\r\n");
        ana.expect("Users online (2): ana, bob");
        ana.send(b"\\w bob hi\r\n");
        bob.expect("priv(ana): hi");
        ana.send(b"\\w bob\r\n");
        ana.expect("Usage: \\w <name> <message>");
    });
}

#[test]
fn line_of_exactly_max_bytes_is_accepted() {
    each_transport(TRANSPORTS, small_lines(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        let sixteen = "0123456789abcdef";
        ana.send_line(sixteen);
        ana.expect(&format!("ana: {sixteen}"));
        bob.expect(&format!("ana: {sixteen}"));
        // The `\r` before `\n` does not count toward the limit.
        ana.send(format!("{sixteen}\r\n").as_bytes());
        ana.expect(&format!("ana: {sixteen}"));
        bob.expect(&format!("ana: {sixteen}"));
        // The limit is in bytes: eight two-byte characters fit.
        let enye = "ñ".repeat(8);
        ana.send_line(&enye);
        ana.expect(&format!("ana: {enye}"));
        bob.expect(&format!("ana: {enye}"));
    });
}

#[test]
fn line_of_max_plus_one_bytes_is_rejected_and_the_connection_stays_open() {
    each_transport(TRANSPORTS, small_lines(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send_line("0123456789abcdefg");
        ana.expect("Line too long (max 16 bytes).");
        ana.send_line("next");
        ana.expect("ana: next");
        bob.expect("ana: next");
        // Bytes, not characters: eight `ñ` and one more byte is 17.
        ana.send_line(&format!("{}x", "ñ".repeat(8)));
        ana.expect("Line too long (max 16 bytes).");
        // A `\r` in the middle counts.
        ana.send(b"0123456789abcde\r\rf\r\n");
        ana.expect("Line too long (max 16 bytes).");
        ana.send_line("still here");
        ana.expect("ana: still here");
        bob.expect("ana: still here");
        bob.expect_nothing_pending();
    });
}

#[test]
fn default_limit_accepts_4096_bytes_and_rejects_4097() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        let max = "m".repeat(4096);
        ana.send_line(&max);
        ana.expect(&format!("ana: {max}"));
        bob.expect(&format!("ana: {max}"));
        ana.send_line(&"m".repeat(4097));
        ana.expect("Line too long (max 4096 bytes).");
        ana.send_line("after");
        ana.expect("ana: after");
        bob.expect("ana: after");
        bob.expect_nothing_pending();
    });
}

#[test]
fn over_long_line_sent_in_many_small_writes_is_rejected_once() {
    each_transport(LINE_TRANSPORTS, small_lines(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        no_delay(&ana);
        for _ in 0..200 {
            ana.send(b"xxxxxxxx");
        }
        ana.send(b"\nok\n");
        ana.expect("Line too long (max 16 bytes).");
        // Exactly one error, and nothing of the long line went anywhere.
        ana.expect("ana: ok");
        bob.expect("ana: ok");
        ana.expect_nothing_pending();
        bob.expect_nothing_pending();
    });
}

#[test]
fn over_long_line_with_the_default_limit_in_many_small_writes() {
    each_transport(LINE_TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        no_delay(&ana);
        let chunk = [b'z'; 512];
        for _ in 0..64 {
            ana.send(&chunk);
        }
        ana.send(b"\r\nok\n");
        ana.expect("Line too long (max 4096 bytes).");
        ana.expect("ana: ok");
        bob.expect("ana: ok");
        bob.expect_nothing_pending();
    });
}

#[test]
fn max_length_line_with_its_crlf_split_across_writes_is_accepted() {
    each_transport(LINE_TRANSPORTS, small_lines(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        no_delay(&ana);
        // 16 bytes and a `\r`: the server must wait for what follows.
        ana.send(b"0123456789abcdef\r");
        ana.send(b"\n");
        ana.expect("ana: 0123456789abcdef");
        bob.expect("ana: 0123456789abcdef");
    });
}

#[test]
fn line_split_across_writes_is_joined() {
    each_transport(LINE_TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        no_delay(&ana);
        ana.send(b"hel");
        ana.send(b"lo wor");
        ana.send(b"ld\n");
        ana.expect("ana: hello world");
        bob.expect("ana: hello world");
        // A multibyte character split between writes.
        let enye = "ñ".as_bytes();
        ana.send(&[b'a', enye[0]]);
        ana.send(&[enye[1], b'\n']);
        ana.expect("ana: añ");
        bob.expect("ana: añ");
        // `\r` and `\n` in different writes.
        ana.send(b"bye\r");
        ana.send(b"\n");
        ana.expect("ana: bye");
        bob.expect("ana: bye");
        // A whole command byte by byte.
        for &byte in b"\\w bob psst\n" {
            ana.send(&[byte]);
        }
        bob.expect("priv(ana): psst");
        ana.expect_nothing_pending();
    });
}

#[test]
fn several_lines_in_one_write_are_all_handled_in_order() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        // Over WebSocket (one message), an invalid line would close the
        // connection with 1007 (tests/transport_clients.rs).
        let invalid: &[u8] = if kind.is_websocket() { b"" } else { b"\xff\n" };
        let mut write = b"one\ntwo\r\n\n\\list\n\\w bob secret\n".to_vec();
        write.extend_from_slice(invalid);
        write.extend_from_slice(b"three\n\\help\n");
        ana.send(&write);
        ana.expect("ana: one");
        ana.expect("ana: two");
        ana.expect("Users online (2): ana, bob");
        if !invalid.is_empty() {
            ana.expect("Message is not valid UTF-8.");
        }
        ana.expect("ana: three");
        ana.expect("Commands: \\w <name> <message>, \\list, \\help, QUIT");
        ana.expect_nothing_pending();
        bob.expect("ana: one");
        bob.expect("ana: two");
        bob.expect("priv(ana): secret");
        bob.expect("ana: three");
        bob.expect_nothing_pending();
    });
}

#[test]
fn invalid_utf8_is_refused_and_the_connection_stays_open() {
    each_transport(LINE_TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"\xff\xfe\n");
        ana.expect("Message is not valid UTF-8.");
        // A truncated sequence, an overlong encoding, a lone surrogate.
        for bad in [&b"caf\xc3\n"[..], b"\xc0\xaf\n", b"\xed\xa0\x80\n"] {
            ana.send(bad);
            let got = ana.line();
            assert_eq!(got, "Message is not valid UTF-8.", "after {bad:?}");
        }
        ana.send_line("fine");
        ana.expect("ana: fine");
        bob.expect("ana: fine");
        bob.expect_nothing_pending();
    });
}

#[test]
fn invalid_utf8_whisper_is_refused_and_not_delivered() {
    each_transport(LINE_TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        ana.send(b"\\w bob \xff\n");
        ana.expect("Message is not valid UTF-8.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn bytes_after_the_last_newline_are_discarded_when_the_connection_is_dropped() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        bob.send_line("bye");
        // Over WebSocket: a message whose last fragment never comes.
        bob.send_unfinished(b"partial");
        bob.expect("bob: bye");
        drop(bob);
        ana.expect("bob: bye");
        ana.expect("bob has left the chat.");
        ana.expect_nothing_pending();
    });
}

#[test]
fn bytes_after_the_last_newline_are_discarded_on_half_close() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        // An unfinished `QUIT` and an unfinished public line alike (over
        // WebSocket, messages whose last fragment never comes).
        bob.send_line("bye");
        if kind.is_websocket() {
            // The server answers a close frame at once and sends nothing
            // after its own (RFC 6455): bob reads his line before closing.
            bob.expect("bob: bye");
        }
        bob.send_unfinished(b"QUIT");
        bob.shutdown_write();
        if !kind.is_websocket() {
            bob.expect("bob: bye");
        }
        bob.expect_closed_with(1000);
        ana.expect("bob: bye");
        ana.expect("bob has left the chat.");
        ana.expect_nothing_pending();

        let mut cy = server.join_over(kind, "cy");
        ana.expect("cy has joined the chat.");
        cy.send_unfinished(b"half a line");
        cy.shutdown_write();
        cy.expect_closed_with(1000);
        ana.expect("cy has left the chat.");
        ana.expect_nothing_pending();
    });
}

#[test]
fn lines_split_across_the_fragments_of_a_message_are_joined() {
    each_transport(WEBSOCKET_TRANSPORTS, small_lines(), |server, kind| {
        let (mut ana, mut bob) = pair(&server, kind);
        let fragment = |bytes: &[u8], first: bool, last: bool| {
            let opcode = if first { Data::Text } else { Data::Continue };
            Message::Frame(Frame::message(bytes.to_vec(), OpCode::Data(opcode), last))
        };
        // A character split between fragments, and a message of two lines
        // whose second one starts in the last fragment.
        let enye = "ñ".as_bytes();
        ana.send_message(fragment(&[b'a', enye[0]], true, false));
        ana.send_message(fragment(&[enye[1], b'\n', b'b'], false, false));
        ana.send_message(fragment(b"ye", false, true));
        ana.expect("ana: añ");
        ana.expect("ana: bye");
        bob.expect("ana: añ");
        bob.expect("ana: bye");
        // A line far over the limit, in 200 fragments: one error, nothing
        // of it goes anywhere, and the next line of the message counts.
        ana.send_message(fragment(b"xxxxxxxx", true, false));
        for _ in 0..198 {
            ana.send_message(fragment(b"xxxxxxxx", false, false));
        }
        ana.send_message(fragment(b"xxxxxxxx\nok", false, true));
        ana.expect("Line too long (max 16 bytes).");
        ana.expect("ana: ok");
        bob.expect("ana: ok");
        ana.expect_nothing_pending();
        bob.expect_nothing_pending();
    });
}
