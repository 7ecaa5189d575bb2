//! Leaving over every transport: `QUIT`, abrupt disconnects and
//! half-closes (over WebSocket, the client's close frame) each give exactly
//! one leave notice, and by the time it is read the member is gone (name
//! free, not in `\list`, not found by `\w`).
mod common;

use chatcore::ServerConfig;
use common::{each_transport, Client, Kind, TestServer, TRANSPORTS};

/// How a member leaves.
#[derive(Debug, Clone, Copy)]
enum Exit {
    /// Sends `QUIT`.
    Quit,
    /// Drops its connection without a word.
    Drop,
    /// Ends its input (a half-close; over TLS after its `close_notify`,
    /// over WebSocket a close frame) and keeps reading.
    HalfClose,
}

const EXITS: [Exit; 3] = [Exit::Quit, Exit::Drop, Exit::HalfClose];

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

/// Makes `member` leave the way `exit` says. For `QUIT` and a half-close
/// it also checks that the server closes the connection with no further
/// line (over WebSocket, with 1000: after `QUIT`, or echoing the client's
/// own 1000).
fn leave(mut member: Client, exit: Exit) {
    match exit {
        Exit::Quit => {
            member.send_line("QUIT");
            member.expect_closed_with(1000);
        }
        Exit::Drop => drop(member),
        Exit::HalfClose => {
            member.shutdown_write();
            member.expect_closed_with(1000);
        }
    }
}

#[test]
fn quit_closes_the_quitter_and_everyone_else_gets_one_leave_notice() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        bob.send_line("QUIT");
        // The quitter gets nothing more, not even its own leave notice.
        bob.expect_closed_with(1000);
        for member in [&mut ana, &mut cy] {
            member.expect("bob has left the chat.");
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn lines_after_quit_in_the_same_write_are_ignored() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob) = {
            let mut ana = server.join_over(kind, "ana");
            let bob = server.join_over(kind, "bob");
            ana.expect("bob has joined the chat.");
            (ana, bob)
        };
        // Over WebSocket: one message of four lines.
        bob.send(b"last words\nQUIT\nafter quit\n\\list\n");
        bob.expect("bob: last words");
        bob.expect_closed_with(1000);
        ana.expect("bob: last words");
        ana.expect("bob has left the chat.");
        ana.expect_nothing_pending();
    });
}

#[test]
fn lines_queued_for_the_quitter_are_delivered_before_it_is_closed() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");

        // Queue a good deal for ana (well under the 1 MiB outbox) while
        // she reads nothing.
        const COUNT: usize = 2000;
        let payload = "p".repeat(100);
        let mut burst = String::new();
        for i in 0..COUNT {
            burst.push_str(&format!("{i:05} {payload}\n"));
        }
        bob.send(burst.as_bytes());
        bob.send_line("\\w ana last whisper");
        // bob's own copy of the last public line proves all of them were
        // accepted, hence queued for ana, before her QUIT below.
        for i in 0..COUNT {
            bob.expect(&format!("bob: {i:05} {payload}"));
        }
        bob.expect_nothing_pending();

        ana.send_line("my own line");
        ana.send_line("QUIT");
        for i in 0..COUNT {
            ana.expect(&format!("bob: {i:05} {payload}"));
        }
        ana.expect("priv(bob): last whisper");
        ana.expect("ana: my own line");
        ana.expect_closed_with(1000);

        bob.expect("ana: my own line");
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    });
}

#[test]
fn abrupt_disconnect_gives_exactly_one_leave_notice() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, bob, mut cy) = trio(&server, kind);
        drop(bob);
        for member in [&mut ana, &mut cy] {
            member.expect("bob has left the chat.");
            member.expect_nothing_pending();
        }
        // Later activity brings no second notice.
        ana.send_line("still here");
        for member in [&mut ana, &mut cy] {
            member.expect("ana: still here");
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn abrupt_disconnect_with_unread_lines_gives_exactly_one_leave_notice() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        // bob has lines waiting that he never reads: closing then may
        // reset the connection instead of ending it cleanly.
        ana.send_line("unread by bob");
        ana.expect("ana: unread by bob");
        cy.expect("ana: unread by bob");
        bob.send_line("\\help");
        drop(bob);
        for member in [&mut ana, &mut cy] {
            member.expect("bob has left the chat.");
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn half_close_gives_exactly_one_leave_notice_and_closes_the_connection() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let (mut ana, mut bob, mut cy) = trio(&server, kind);
        bob.send_line("going");
        if kind.is_websocket() {
            // A client's close frame is answered at once, and nothing
            // follows the server's close frame (RFC 6455): what the server
            // had not sent yet is dropped, so bob reads his line first.
            bob.expect("bob: going");
            bob.shutdown_write();
        } else {
            // The end of input leaves what was queued for bob to come.
            bob.shutdown_write();
            bob.expect("bob: going");
        }
        bob.expect_closed_with(1000);
        for member in [&mut ana, &mut cy] {
            member.expect("bob: going");
            member.expect("bob has left the chat.");
            member.expect_nothing_pending();
        }
    });
}

#[test]
fn after_the_leave_notice_the_name_is_free_at_once() {
    for exit in EXITS {
        each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
            let (mut ana, bob, mut cy) = trio(&server, kind);
            leave(bob, exit);
            ana.expect("bob has left the chat.");
            // No waiting: the name was freed before the notice was sent.
            let mut newcomer = server.connect();
            newcomer.name = format!("new bob after {exit:?}");
            newcomer.expect("NAME");
            newcomer.send_line("BOB");
            newcomer.expect("Welcome to the chat, BOB!");
            newcomer.expect("BOB has joined the chat.");
            ana.expect("BOB has joined the chat.");
            cy.expect("bob has left the chat.");
            cy.expect("BOB has joined the chat.");
        });
    }
}

#[test]
fn after_the_leave_notice_the_member_is_gone_from_list() {
    for exit in EXITS {
        each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
            let (mut ana, bob, mut cy) = trio(&server, kind);
            leave(bob, exit);
            ana.expect("bob has left the chat.");
            ana.send_line("\\list");
            let got = ana.line();
            assert_eq!(got, "Users online (2): ana, cy", "after {exit:?}");
            cy.expect("bob has left the chat.");
            cy.expect_nothing_pending();
        });
    }
}

#[test]
fn after_the_leave_notice_a_whisper_to_the_member_is_not_found() {
    for exit in EXITS {
        each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
            let (mut ana, bob, mut cy) = trio(&server, kind);
            leave(bob, exit);
            ana.expect("bob has left the chat.");
            ana.send_line("\\w bob are you there?");
            let got = ana.line();
            assert_eq!(got, "User 'bob' not found.", "after {exit:?}");
            cy.expect("bob has left the chat.");
            cy.expect_nothing_pending();
        });
    }
}

#[test]
fn every_remaining_member_gets_the_leave_notice_for_each_exit() {
    for exit in EXITS {
        each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
            let (mut ana, bob, mut cy) = trio(&server, kind);
            leave(bob, exit);
            for member in [&mut ana, &mut cy] {
                let got = member.line();
                assert_eq!(got, "bob has left the chat.", "after {exit:?}");
                member.expect_nothing_pending();
            }
        });
    }
}

#[test]
fn leave_notice_is_ordered_after_the_leavers_last_line() {
    for exit in EXITS {
        each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
            let (mut ana, mut bob, mut cy) = trio(&server, kind);
            bob.send_line("one");
            bob.send_line("two");
            bob.expect("bob: one");
            bob.expect("bob: two");
            leave(bob, exit);
            for member in [&mut ana, &mut cy] {
                member.expect("bob: one");
                member.expect("bob: two");
                let got = member.line();
                assert_eq!(got, "bob has left the chat.", "after {exit:?}");
            }
        });
    }
}
