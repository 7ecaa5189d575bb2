//! Commands after joining, over every transport: public text, `\w`,
//! `\list`, `\help`, and blank lines.
mod common;

use chatcore::ServerConfig;
use common::{each_transport, Client, Kind, TestServer, TRANSPORTS};

const HELP: &str = "Commands: \\w <name> <message>, \\list, \\help, QUIT";
const USAGE: &str = "Usage: \\w <name> <message>";

/// Three members, `ana`, `bob` and `cy`, joined in that order, with every
/// join notice read, all over `kind`.
fn trio(server: &TestServer, kind: Kind) -> (Client, Client, Client) {
    let mut ana = server.join_over(kind, "ana");
    let mut bob = server.join_over(kind, "bob");
    ana.expect("bob has joined the chat.");
    let cy = server.join_over(kind, "cy");
    ana.expect("cy has joined the chat.");
    bob.expect("cy has joined the chat.");
    (ana, bob, cy)
}

#[test]
fn public_text_reaches_everyone_including_the_sender() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        bob.send_line("hello all");
        for member in [&mut ana, &mut bob, &mut cy] {
            member.expect("bob: hello all");
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn public_text_is_kept_as_sent_with_inner_leading_and_trailing_spaces() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        for text in [
            "a  b   c",
            "   leading",
            "trailing   ",
            "  both  ",
            "\ttabbed\t text\t",
            "ünïcödé ✓ 😀",
        ] {
            ana.send_line(text);
            ana.expect(&format!("ana: {text}"));
            bob.expect(&format!("ana: {text}"));
        }
    });
}

#[test]
fn lines_that_only_look_like_commands_are_public_text() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        for text in [
            "\\o/",
            "QUIT ",
            " QUIT",
            "quit",
            "Quit",
            "QUITTING",
            "\\listing",
            "\\helpme",
            "\\wbob hi",
            "\\W bob hi",
            " \\list",
            " \\w bob hi",
            "\\",
        ] {
            ana.send_line(text);
            ana.expect(&format!("ana: {text}"));
            bob.expect(&format!("ana: {text}"));
        }
        // `ana` is still here: none of those was a QUIT.
        bob.send_line("\\list");
        bob.expect("Users online (2): ana, bob");
    });
}

#[test]
fn whisper_reaches_the_target_alone_and_the_sender_gets_nothing() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        ana.send_line("\\w bob see you  at  noon ");
        bob.expect("priv(ana): see you  at  noon ");
        ana.expect_nothing_pending();
        cy.expect_nothing_pending();
        bob.expect_nothing_pending();
    });
}

#[test]
fn whisper_target_is_matched_without_regard_to_case() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut nandu = server.join_over(kind, "Ñandú");
        ana.expect("Ñandú has joined the chat.");
        ana.send_line("\\w BOB x");
        ana.expect("User 'BOB' not found.");
        ana.send_line("\\w ñANDÚ hola");
        nandu.expect("priv(ana): hola");
        nandu.send_line("\\w ANA hi");
        ana.expect("priv(Ñandú): hi");
        ana.expect_nothing_pending();
        nandu.expect_nothing_pending();
    });
}

#[test]
fn whisper_to_self_is_allowed() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("\\w ANA note to self");
        ana.expect("priv(ana): note to self");
        bob.expect_nothing_pending();
    });
}

#[test]
fn whisper_separators_may_be_several_spaces_or_tabs() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        ana.send_line("\\w   bob \t  a  b");
        bob.expect("priv(ana): a  b");
        ana.send_line("\\w\tbob\thi");
        bob.expect("priv(ana): hi");
        ana.expect_nothing_pending();
        cy.expect_nothing_pending();
    });
}

#[test]
fn whisper_without_target_or_text_gets_usage() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        for line in [
            "\\w",
            "\\w ",
            "\\w bob",
            "\\w bob   ",
            "\\w \t ",
            "\\w\tbob\t",
        ] {
            ana.send_line(line);
            let got = ana.line();
            assert_eq!(got, USAGE, "after {line:?}");
        }
        bob.expect_nothing_pending();
        ana.expect_nothing_pending();
    });
}

#[test]
fn whisper_to_nobody_online_gets_not_found_with_the_target_as_sent() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("\\w nobody x");
        ana.expect("User 'nobody' not found.");
        ana.send_line("\\w NoBody some text");
        ana.expect("User 'NoBody' not found.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn list_is_in_join_order_after_a_leave_and_rejoin() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        ana.send_line("\\list");
        ana.expect("Users online (3): ana, bob, cy");

        bob.send_line("QUIT");
        bob.expect_closed_with(1000);
        ana.expect("bob has left the chat.");
        cy.expect("bob has left the chat.");

        let _bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        cy.expect("bob has joined the chat.");
        ana.send_line("\\list");
        ana.expect("Users online (3): ana, cy, bob");
        cy.send_line("\\list");
        cy.expect("Users online (3): ana, cy, bob");
    });
}

#[test]
fn list_goes_to_the_sender_alone_and_ignores_words_after_it() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        for line in ["\\list", "\\list all of them", "\\list\tplease", "\\list "] {
            ana.send_line(line);
            let got = ana.line();
            assert_eq!(got, "Users online (2): ana, bob", "after {line:?}");
        }
        bob.expect_nothing_pending();
    });
}

#[test]
fn help_has_the_exact_text_and_ignores_words_after_it() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        for line in ["\\help", "\\help me please", "\\help\tnow", "\\help "] {
            ana.send_line(line);
            let got = ana.line();
            assert_eq!(got, HELP, "after {line:?}");
        }
        bob.expect_nothing_pending();
    });
}

#[test]
fn blank_lines_after_joining_are_ignored() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        ana.send(b"\n");
        ana.send(b"   \n");
        ana.send(b"\t\n");
        ana.send(b" \t \t\r\n");
        ana.send(b"\r\n");
        // The sync whisper is handled after the blank lines: had any of them
        // produced a line, it would come first.
        ana.expect_nothing_pending();
        bob.expect_nothing_pending();
    });
}

#[test]
fn line_of_only_no_break_spaces_is_public_text() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("\u{a0}");
        ana.expect("ana: \u{a0}");
        bob.expect("ana: \u{a0}");
        ana.send_line(" \u{a0} ");
        ana.expect("ana:  \u{a0} ");
        bob.expect("ana:  \u{a0} ");
    });
}
