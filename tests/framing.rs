//! Framing over real TCP: `\r\n`, a `\r` inside a line, the maximum line
//! length, invalid UTF-8, several lines per write and lines split across
//! writes, and bytes left unfinished when a connection ends.
mod common;

use chatcore::ServerConfig;
use common::{Client, TestServer, IO_MODES};

/// `ana` and `bob`, joined, with `bob`'s join notice read by `ana`.
fn pair(server: &TestServer) -> (Client, Client) {
    let mut ana = server.join("ana");
    let bob = server.join("bob");
    ana.expect("bob has joined the chat.");
    (ana, bob)
}

/// A server whose lines are at most 16 bytes.
fn small_server(io: common::Io) -> TestServer {
    TestServer::with_config(io, ServerConfig::default().max_line(16))
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
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"hi\r\n");
        ana.expect("ana: hi");
        bob.expect("ana: hi");
    }
}

#[test]
fn cr_inside_a_line_is_kept_and_rendered_as_replacement_character() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn cr_inside_a_whisper_is_rendered_as_replacement_character() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"\\w bob x\ry\r\n");
        bob.expect("priv(ana): x\u{fffd}y");
    }
}

#[test]
fn lone_cr_line_is_public_text_not_blank() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        // `\r\r\n`: one `\r` dropped, the other kept: not a blank line.
        ana.send(b"\r\r\n");
        ana.expect("ana: \u{fffd}");
        bob.expect("ana: \u{fffd}");
    }
}

#[test]
fn quit_with_crlf_quits() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"QUIT\r\n");
        ana.expect_closed();
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    }
}

#[test]
fn commands_with_crlf_work() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"\\list\r\n");
        ana.expect("Users online (2): ana, bob");
        ana.send(b"\\w bob hi\r\n");
        bob.expect("priv(ana): hi");
        ana.send(b"\\w bob\r\n");
        ana.expect("Usage: \\w <name> <message>");
    }
}

#[test]
fn line_of_exactly_max_bytes_is_accepted() {
    for &io in IO_MODES {
        let server = small_server(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn line_of_max_plus_one_bytes_is_rejected_and_the_connection_stays_open() {
    for &io in IO_MODES {
        let server = small_server(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn default_limit_accepts_4096_bytes_and_rejects_4097() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn over_long_line_sent_in_many_small_writes_is_rejected_once() {
    for &io in IO_MODES {
        let server = small_server(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn over_long_line_with_the_default_limit_in_many_small_writes() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn max_length_line_with_its_crlf_split_across_writes_is_accepted() {
    for &io in IO_MODES {
        let server = small_server(io);
        let (mut ana, mut bob) = pair(&server);
        no_delay(&ana);
        // 16 bytes and a `\r`: the server must wait for what follows.
        ana.send(b"0123456789abcdef\r");
        ana.send(b"\n");
        ana.expect("ana: 0123456789abcdef");
        bob.expect("ana: 0123456789abcdef");
    }
}

#[test]
fn line_split_across_writes_is_joined() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn several_lines_in_one_write_are_all_handled_in_order() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"one\ntwo\r\n\n\\list\n\\w bob secret\n\xff\nthree\n\\help\n");
        ana.expect("ana: one");
        ana.expect("ana: two");
        ana.expect("Users online (2): ana, bob");
        ana.expect("Message is not valid UTF-8.");
        ana.expect("ana: three");
        ana.expect("Commands: \\w <name> <message>, \\list, \\help, QUIT");
        ana.expect_nothing_pending();
        bob.expect("ana: one");
        bob.expect("ana: two");
        bob.expect("priv(ana): secret");
        bob.expect("ana: three");
        bob.expect_nothing_pending();
    }
}

#[test]
fn invalid_utf8_is_refused_and_the_connection_stays_open() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
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
    }
}

#[test]
fn invalid_utf8_whisper_is_refused_and_not_delivered() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        ana.send(b"\\w bob \xff\n");
        ana.expect("Message is not valid UTF-8.");
        bob.expect_nothing_pending();
    }
}

#[test]
fn bytes_after_the_last_newline_are_discarded_when_the_connection_is_dropped() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        bob.send(b"bye\npartial");
        bob.expect("bob: bye");
        drop(bob);
        ana.expect("bob: bye");
        ana.expect("bob has left the chat.");
        ana.expect_nothing_pending();
    }
}

#[test]
fn bytes_after_the_last_newline_are_discarded_on_half_close() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let (mut ana, mut bob) = pair(&server);
        // An unfinished `QUIT` and an unfinished public line alike.
        bob.send(b"bye\nQUIT");
        bob.shutdown_write();
        bob.expect("bob: bye");
        bob.expect_closed();
        ana.expect("bob: bye");
        ana.expect("bob has left the chat.");
        ana.expect_nothing_pending();

        let mut cy = server.join("cy");
        ana.expect("cy has joined the chat.");
        cy.send(b"half a line");
        cy.shutdown_write();
        cy.expect_closed();
        ana.expect("cy has left the chat.");
        ana.expect_nothing_pending();
    }
}
