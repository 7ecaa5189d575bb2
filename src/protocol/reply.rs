//! Typed server lines, rendered to bytes in one place.
//!
//! Every text the server sends is written here and nowhere else. A reply is
//! encoded once into [`Bytes`]; fan-out hands each recipient a cheap clone.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// One line the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply<'a> {
    /// `NAME`: the server asks for a name.
    Name,
    /// `Server is full.`
    ServerFull,
    /// The name broke the naming rules.
    InvalidName,
    /// `Name '<name>' is already taken.`
    NameTaken(&'a str),
    /// `Welcome to the chat, <name>!`
    Welcome(&'a str),
    /// `<name> has joined the chat.`
    Joined(&'a str),
    /// `<name> has left the chat.`
    Left(&'a str),
    /// `<name>: <text>`, a public line.
    Public {
        /// Who said it.
        from: &'a str,
        /// What was said.
        text: &'a str,
    },
    /// `priv(<name>): <text>`, a private line.
    Private {
        /// Who whispered it.
        from: &'a str,
        /// What was whispered.
        text: &'a str,
    },
    /// `User '<name>' not found.`
    UserNotFound(&'a str),
    /// `Usage: \w <name> <message>`
    WhisperUsage,
    /// `Users online (<n>): <name>, <name>, …`
    UserList(&'a [&'a str]),
    /// The list of commands.
    Help,
    /// `Line too long (max <limit> bytes).`
    LineTooLong(usize),
    /// `Message is not valid UTF-8.`
    InvalidUtf8,
    /// `Timed out waiting for a name.`
    NameTimeout,
    /// `Server is shutting down.`
    ShuttingDown,
    /// `Message not sent: the room is unavailable.` (a room across servers
    /// could not take the line).
    Unavailable,
}

impl Reply<'_> {
    /// Renders the line, with its final `\n`.
    ///
    /// The server never sends `\r`: a `\r` inside relayed text (a client may
    /// send one in the middle of a line) is rendered as U+FFFD.
    ///
    /// ```
    /// use chatcore::protocol::Reply;
    ///
    /// let line = Reply::Public { from: "ana", text: "hi" }.encode();
    /// assert_eq!(&line[..], b"ana: hi\n");
    /// ```
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size_hint());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the rendered line, with its final `\n`, to `out`: several
    /// replies can share one buffer.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let mut out = Line(out);
        match *self {
            Reply::Name => out.text("NAME"),
            Reply::ServerFull => out.text("Server is full."),
            Reply::InvalidName => out.text(
                "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.",
            ),
            Reply::NameTaken(name) => {
                out.text("Name '");
                out.text(name);
                out.text("' is already taken.");
            }
            Reply::Welcome(name) => {
                out.text("Welcome to the chat, ");
                out.text(name);
                out.text("!");
            }
            Reply::Joined(name) => {
                out.text(name);
                out.text(" has joined the chat.");
            }
            Reply::Left(name) => {
                out.text(name);
                out.text(" has left the chat.");
            }
            Reply::Public { from, text } => {
                out.text(from);
                out.text(": ");
                out.text(text);
            }
            Reply::Private { from, text } => {
                out.text("priv(");
                out.text(from);
                out.text("): ");
                out.text(text);
            }
            Reply::UserNotFound(name) => {
                out.text("User '");
                out.text(name);
                out.text("' not found.");
            }
            Reply::WhisperUsage => out.text("Usage: \\w <name> <message>"),
            Reply::UserList(names) => {
                out.text("Users online (");
                out.number(names.len());
                out.text("): ");
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.text(", ");
                    }
                    out.text(name);
                }
            }
            Reply::Help => out.text("Commands: \\w <name> <message>, \\list, \\help, QUIT"),
            Reply::LineTooLong(limit) => {
                out.text("Line too long (max ");
                out.number(limit);
                out.text(" bytes).");
            }
            Reply::InvalidUtf8 => out.text("Message is not valid UTF-8."),
            Reply::NameTimeout => out.text("Timed out waiting for a name."),
            Reply::ShuttingDown => out.text("Server is shutting down."),
            Reply::Unavailable => out.text("Message not sent: the room is unavailable."),
        }
        out.end();
    }

    /// About how many bytes the rendered line takes.
    pub fn size_hint(&self) -> usize {
        match *self {
            Reply::Public { from, text } | Reply::Private { from, text } => {
                from.len() + text.len() + 10
            }
            Reply::UserList(names) => names.iter().map(|n| n.len() + 2).sum::<usize>() + 24,
            _ => 96,
        }
    }
}

/// A line being rendered at the end of a buffer.
struct Line<'b>(&'b mut BytesMut);

impl Line<'_> {
    /// Appends text, with every `\r` replaced by U+FFFD.
    fn text(&mut self, text: &str) {
        let mut rest = text;
        while let Some(i) = rest.find('\r') {
            self.0.put_slice(&rest.as_bytes()[..i]);
            self.0.put_slice(
                char::REPLACEMENT_CHARACTER
                    .encode_utf8(&mut [0; 4])
                    .as_bytes(),
            );
            rest = &rest[i + 1..];
        }
        self.0.put_slice(rest.as_bytes());
    }

    fn number(&mut self, n: usize) {
        let mut digits = String::with_capacity(20);
        let _ = write!(digits, "{n}");
        self.text(&digits);
    }

    fn end(self) {
        self.0.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: Reply<'_>) -> String {
        String::from_utf8(reply.encode().to_vec()).expect("replies are UTF-8")
    }

    #[test]
    fn every_reply_ends_with_a_single_newline() {
        let names = ["a", "b"];
        for reply in [
            Reply::Name,
            Reply::ServerFull,
            Reply::InvalidName,
            Reply::NameTaken("x"),
            Reply::Welcome("x"),
            Reply::Joined("x"),
            Reply::Left("x"),
            Reply::Public {
                from: "x",
                text: "y",
            },
            Reply::Private {
                from: "x",
                text: "y",
            },
            Reply::UserNotFound("x"),
            Reply::WhisperUsage,
            Reply::UserList(&names),
            Reply::Help,
            Reply::LineTooLong(4096),
            Reply::InvalidUtf8,
            Reply::NameTimeout,
            Reply::ShuttingDown,
            Reply::Unavailable,
        ] {
            let line = text(reply);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert!(!line.contains('\r'));
        }
    }

    #[test]
    fn texts_match_the_protocol() {
        assert_eq!(
            text(Reply::InvalidName),
            "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.\n"
        );
        assert_eq!(
            text(Reply::NameTaken("Ana")),
            "Name 'Ana' is already taken.\n"
        );
        assert_eq!(text(Reply::Welcome("Ana")), "Welcome to the chat, Ana!\n");
        assert_eq!(text(Reply::Joined("Ana")), "Ana has joined the chat.\n");
        assert_eq!(text(Reply::Left("Ana")), "Ana has left the chat.\n");
        assert_eq!(
            text(Reply::Private {
                from: "Ana",
                text: " a  b "
            }),
            "priv(Ana):  a  b \n"
        );
        assert_eq!(text(Reply::UserNotFound("bob")), "User 'bob' not found.\n");
        assert_eq!(text(Reply::WhisperUsage), "Usage: \\w <name> <message>\n");
        assert_eq!(
            text(Reply::UserList(&["Ana", "bob", "Ñandú"])),
            "Users online (3): Ana, bob, Ñandú\n"
        );
        assert_eq!(
            text(Reply::Help),
            "Commands: \\w <name> <message>, \\list, \\help, QUIT\n"
        );
        assert_eq!(
            text(Reply::LineTooLong(4096)),
            "Line too long (max 4096 bytes).\n"
        );
        assert_eq!(text(Reply::InvalidUtf8), "Message is not valid UTF-8.\n");
        assert_eq!(text(Reply::NameTimeout), "Timed out waiting for a name.\n");
        assert_eq!(text(Reply::ShuttingDown), "Server is shutting down.\n");
        assert_eq!(text(Reply::ServerFull), "Server is full.\n");
        assert_eq!(
            text(Reply::Unavailable),
            "Message not sent: the room is unavailable.\n"
        );
    }

    #[test]
    fn a_carriage_return_inside_text_is_never_sent() {
        assert_eq!(
            text(Reply::Public {
                from: "ana",
                text: "a\rb\r"
            }),
            "ana: a\u{fffd}b\u{fffd}\n"
        );
    }
}
