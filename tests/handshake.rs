//! The handshake over every transport: `NAME`, the naming rules, taken
//! names, `QUIT` as a name, the welcome and join notices, framing errors and
//! connections that end before joining.
mod common;

use chatcore::ServerConfig;
use common::{each_transport, wait_until, Client, Kind, TestServer, LINE_TRANSPORTS, TRANSPORTS};

const INVALID_NAME: &str =
    "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.";

/// Connects over `kind` and reads the server's first line, which must be
/// `NAME`.
fn connect_named(server: &TestServer, kind: Kind, label: &str) -> Client {
    let mut client = server.connect_over(kind);
    client.name = label.to_owned();
    client.expect("NAME");
    client
}

#[test]
fn name_is_the_first_line_on_accept() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut client = server.connect_over(kind);
        client.expect("NAME");
        // Nothing else is sent until the client speaks: the next line is
        // the answer to the name.
        client.send_line("ana");
        client.expect("Welcome to the chat, ana!");
        client.expect("ana has joined the chat.");
    });
}

#[test]
fn valid_names_one_and_thirty_two_characters_multibyte_counts_as_one() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let thirty_two_ascii = "a".repeat(32);
        let thirty_two_enye = "ñ".repeat(32);
        assert_eq!(thirty_two_enye.len(), 64, "ñ is two bytes in UTF-8");
        let names = [
            "x",
            thirty_two_ascii.as_str(),
            thirty_two_enye.as_str(),
            "o\\o",
            "Ñandú",
        ];
        let mut members: Vec<Client> = Vec::new();
        for name in names {
            let newcomer = server.join_over(kind, name);
            for member in &mut members {
                member.expect(&format!("{name} has joined the chat."));
            }
            members.push(newcomer);
        }
        let first = &mut members[0];
        first.send_line("\\list");
        first.expect(&format!("Users online (5): {}", names.join(", ")));
    });
}

#[test]
fn invalid_names_get_the_invalid_line_then_name_again() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut client = connect_named(&server, kind, "newcomer");
        let cases = [
            ("33 characters", "a".repeat(33)),
            ("33 multibyte characters", "ñ".repeat(33)),
            ("a space", "a b".to_owned()),
            ("a tab", "a\tb".to_owned()),
            ("a no-break space U+00A0", "a\u{a0}b".to_owned()),
            ("only a no-break space", "\u{a0}".to_owned()),
            ("an em space U+2003", "a\u{2003}".to_owned()),
            ("a NUL", "nul\0".to_owned()),
            ("an ESC", "esc\u{1b}".to_owned()),
            ("a DEL", "del\u{7f}".to_owned()),
            ("a carriage return inside", "a\rb".to_owned()),
            ("a leading backslash", "\\ana".to_owned()),
            ("a command as the name", "\\w".to_owned()),
            ("a leading space", " ana".to_owned()),
            ("a colon", "ana:".to_owned()),
            ("parentheses", "priv(ana)".to_owned()),
            ("a comma", "x,y".to_owned()),
        ];
        for (what, name) in &cases {
            client.send_line(name);
            let line = client.line();
            assert_eq!(line, INVALID_NAME, "name with {what}: {name:?}");
            let line = client.line();
            assert_eq!(line, "NAME", "after the name with {what}: {name:?}");
        }
        // Still in the handshake, and a valid name now works.
        client.send_line("ana");
        client.expect("Welcome to the chat, ana!");
        client.expect("ana has joined the chat.");
        client.name = "ana".to_owned();
        client.send_line("\\list");
        client.expect("Users online (1): ana");
    });
}

#[test]
fn names_that_could_pass_for_another_members_line_are_refused() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        let mut client = connect_named(&server, kind, "spoofer");
        // `priv(ana)` saying `hi` would read as a whisper from ana; `ana:`
        // joining would read as ana speaking; `,` would break `\list`.
        for name in ["priv(ana)", "ana:", "x,y", "(", ")", ":", ","] {
            client.send_line(name);
            let line = client.line();
            assert_eq!(line, INVALID_NAME, "name {name:?}");
            let line = client.line();
            assert_eq!(line, "NAME", "after the name {name:?}");
        }
        // Nothing was announced to anyone, and nobody joined.
        ana.expect_nothing_pending();
        bob.expect_nothing_pending();
        ana.send_line("\\list");
        ana.expect("Users online (2): ana, bob");
        // Still in the handshake: a valid name now joins.
        client.send_line("cy");
        client.expect("Welcome to the chat, cy!");
        client.expect("cy has joined the chat.");
        ana.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
    });
}

#[test]
fn empty_and_blank_names_are_ignored_as_blank_lines() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut client = connect_named(&server, kind, "newcomer");
        // No reply to any of these: the next line answers the invalid name.
        client.send(b"\n \n\t\n \t \r\n");
        client.send_line("bad name");
        client.expect(INVALID_NAME);
        client.expect("NAME");
        // And the next answers the valid one.
        client.send(b"\n\n");
        client.send_line("ana");
        client.expect("Welcome to the chat, ana!");
        client.expect("ana has joined the chat.");
    });
}

#[test]
fn taken_name_is_refused_without_regard_to_case() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "Ana");
        let mut client = connect_named(&server, kind, "newcomer");
        for attempt in ["Ana", "ana", "ANA", "aNa"] {
            client.send_line(attempt);
            client.expect(&format!("Name '{attempt}' is already taken."));
            client.expect("NAME");
        }
        client.send_line("bob");
        client.expect("Welcome to the chat, bob!");
        client.expect("bob has joined the chat.");
        ana.expect("bob has joined the chat.");
        ana.expect_nothing_pending();
    });
}

#[test]
fn taken_name_compares_unicode_lowercase_nandu() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut nandu = server.join_over(kind, "Ñandú");
        let mut client = connect_named(&server, kind, "newcomer");
        client.send_line("ñANDÚ");
        // The taken line shows the name as the newcomer sent it.
        client.expect("Name 'ñANDÚ' is already taken.");
        client.expect("NAME");
        client.send_line("ñandú");
        client.expect("Name 'ñandú' is already taken.");
        client.expect("NAME");
        client.send_line("QUIT");
        client.expect_closed_with(1000);
        nandu.expect_nothing_pending();
    });
}

#[test]
fn member_is_shown_as_it_registered() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut nandu = server.join_over(kind, "Ñandú");
        let mut bob = server.join_over(kind, "bob");
        nandu.expect("bob has joined the chat.");

        nandu.send_line("hola");
        nandu.expect("Ñandú: hola");
        bob.expect("Ñandú: hola");

        // Whispered to with another case, still shown as registered.
        bob.send_line("\\w ñANDÚ psst");
        nandu.expect("priv(bob): psst");
        nandu.send_line("\\w BOB si");
        bob.expect("priv(Ñandú): si");

        bob.send_line("\\list");
        bob.expect("Users online (2): Ñandú, bob");
    });
}

#[test]
fn quit_as_the_name_closes_silently() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "quitter");
        client.send_line("QUIT");
        client.expect_closed_with(1000);
        // The server has handled QUIT (it closed the connection); nobody
        // was told anything, and nobody joined.
        ana.expect_nothing_pending();
        ana.send_line("\\list");
        ana.expect("Users online (1): ana");
    });
}

#[test]
fn quit_as_the_name_after_a_refused_name_closes_silently() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "quitter");
        client.send_line("ana");
        client.expect("Name 'ana' is already taken.");
        client.expect("NAME");
        client.send(b"QUIT\r\n");
        client.expect_closed_with(1000);
        ana.expect_nothing_pending();
    });
}

#[test]
fn welcome_comes_before_the_own_join_notice() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut client = connect_named(&server, kind, "ana");
        client.send_line("ana");
        assert_eq!(client.line(), "Welcome to the chat, ana!");
        assert_eq!(client.line(), "ana has joined the chat.");
        client.expect_nothing_pending();
    });
}

#[test]
fn join_notice_goes_to_every_existing_member() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        let mut cy = server.join_over(kind, "cy");
        ana.expect("cy has joined the chat.");
        bob.expect("cy has joined the chat.");
        for member in [&mut ana, &mut bob, &mut cy] {
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn lines_before_joining_are_not_public() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "newcomer");
        // Every handshake line is a name attempt, never public text.
        client.send_line("hello everyone");
        client.expect(INVALID_NAME);
        client.expect("NAME");
        ana.expect_nothing_pending();
    });
}

#[test]
fn connection_half_closed_during_the_handshake_tells_nobody() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "lurker");
        // A name without its `\n`: discarded when the input ends.
        client.send_unfinished(b"bob");
        client.shutdown_write();
        client.expect_closed_with(1000);
        ana.expect_nothing_pending();
        ana.send_line("\\list");
        ana.expect("Users online (1): ana");
        // The unfinished name was never taken.
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn connection_dropped_during_the_handshake_tells_nobody() {
    // Room for ana and one more connection: once a probe gets `NAME`, the
    // dropped connection's slot is free, so the server is done with it. The
    // probes come over TCP: the limit counts every transport together.
    let config = ServerConfig::default().max_clients(2);
    each_transport(TRANSPORTS, config, |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "lurker");
        client.send_unfinished(b"bob");
        drop(client);
        wait_until(
            || {
                let mut probe = server.connect();
                probe.name = "probe".to_owned();
                match probe.line().as_str() {
                    "NAME" => true,
                    "Server is full." => false,
                    other => panic!("probe: unexpected first line {other:?}"),
                }
            },
            "the dropped handshake connection to be released",
        );
        ana.expect_nothing_pending();
        ana.send_line("\\list");
        ana.expect("Users online (1): ana");
    });
}

#[test]
fn over_long_name_line_gets_line_too_long_then_name_again() {
    each_transport(
        TRANSPORTS,
        ServerConfig::default().max_line(16),
        |server, kind| {
            let mut client = connect_named(&server, kind, "newcomer");
            client.send_line(&"n".repeat(17));
            client.expect("Line too long (max 16 bytes).");
            client.expect("NAME");
            client.send_line("ana");
            client.expect("Welcome to the chat, ana!");
            client.expect("ana has joined the chat.");
        },
    );
}

#[test]
fn over_long_name_line_with_the_default_limit() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut client = connect_named(&server, kind, "newcomer");
        client.send_line(&"n".repeat(4097));
        client.expect("Line too long (max 4096 bytes).");
        client.expect("NAME");
        client.send_line("ana");
        client.expect("Welcome to the chat, ana!");
        client.expect("ana has joined the chat.");
    });
}

#[test]
fn invalid_utf8_name_line_gets_the_utf8_error_then_name_again() {
    // Over WebSocket, invalid UTF-8 closes the connection with 1007
    // (tests/transport_clients.rs).
    each_transport(LINE_TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "newcomer");
        client.send(b"\xff\xfe\n");
        client.expect("Message is not valid UTF-8.");
        client.expect("NAME");
        // A truncated two-byte sequence (the first byte of `ñ`).
        client.send(b"bob\xc3\n");
        client.expect("Message is not valid UTF-8.");
        client.expect("NAME");
        client.send_line("bob");
        client.expect("Welcome to the chat, bob!");
        client.expect("bob has joined the chat.");
        ana.expect("bob has joined the chat.");
    });
}

#[test]
fn name_sent_with_crlf_is_accepted_without_the_cr() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut client = connect_named(&server, kind, "bob");
        client.send(b"bob\r\n");
        client.expect("Welcome to the chat, bob!");
        client.expect("bob has joined the chat.");
        ana.expect("bob has joined the chat.");
        ana.send_line("\\list");
        ana.expect("Users online (2): ana, bob");
        // The registered name has no `\r`: whispering to `bob` finds it.
        ana.send_line("\\w bob hi");
        client.expect("priv(ana): hi");
    });
}
