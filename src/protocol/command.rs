//! Lines to commands: the parsing half of the line protocol.

/// What a joined member's line asks for.
///
/// A line is a command only when its first word is exactly `\w`, `\list` or
/// `\help`, or the whole line is exactly `QUIT`; every other line is public
/// text, kept as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// Public text for every member.
    Say(&'a str),
    /// `\w <target> <text>`: a private message.
    Whisper {
        /// The name of the member it is for.
        target: &'a str,
        /// The message, kept as sent (inner spaces included).
        text: &'a str,
    },
    /// `\w` without a target or without a text.
    WhisperUsage,
    /// `\list`: who is online.
    List,
    /// `\help`: the commands.
    Help,
    /// `QUIT`: leave the chat.
    Quit,
}

impl<'a> Command<'a> {
    /// Parses one line (already framed: no `\n`, no final `\r`).
    ///
    /// ```
    /// use chatcore::protocol::Command;
    ///
    /// assert_eq!(Command::parse("hi all"), Command::Say("hi all"));
    /// assert_eq!(
    ///     Command::parse(r"\w bob  see  you"),
    ///     Command::Whisper { target: "bob", text: "see  you" }
    /// );
    /// assert_eq!(Command::parse(r"\w bob"), Command::WhisperUsage);
    /// assert_eq!(Command::parse(r"\list please"), Command::List);
    /// assert_eq!(Command::parse("QUIT "), Command::Say("QUIT "));
    /// ```
    pub fn parse(line: &'a str) -> Command<'a> {
        if line == "QUIT" {
            return Command::Quit;
        }
        let (first, rest) = split_word(line);
        match first {
            r"\w" => {
                let (target, rest) = split_word(skip_separators(rest));
                let text = skip_separators(rest);
                if target.is_empty() || text.is_empty() {
                    Command::WhisperUsage
                } else {
                    Command::Whisper { target, text }
                }
            }
            r"\list" => Command::List,
            r"\help" => Command::Help,
            _ => Command::Say(line),
        }
    }
}

/// Whether `b` separates the words of a command.
fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits off the first word: everything up to the first separator.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(is_separator) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn skip_separators(s: &str) -> &str {
    s.trim_start_matches(is_separator)
}

/// Whether a line is ignored: empty, or only spaces and tabs.
pub fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b == b' ' || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_public_text_is_kept_as_sent() {
        for line in [
            "hello",
            "  leading and trailing  ",
            r"\o/",
            "QUIT ",
            " QUIT",
            "quit",
            r"\wbob hi",
            r"\listing",
            r"\helpme",
            r"\W bob hi",
            r" \list",
        ] {
            assert_eq!(Command::parse(line), Command::Say(line), "{line:?}");
        }
    }

    #[test]
    fn parse_quit_only_exactly() {
        assert_eq!(Command::parse("QUIT"), Command::Quit);
        assert_eq!(Command::parse("QUIT\r"), Command::Say("QUIT\r"));
    }

    #[test]
    fn parse_whisper_keeps_inner_spaces_of_text() {
        assert_eq!(
            Command::parse("\\w   Bob \t a  b  "),
            Command::Whisper {
                target: "Bob",
                text: "a  b  "
            }
        );
        assert_eq!(
            Command::parse("\\w\tbob\thi"),
            Command::Whisper {
                target: "bob",
                text: "hi"
            }
        );
    }

    #[test]
    fn parse_whisper_without_target_or_text_is_usage() {
        for line in [r"\w", r"\w ", r"\w bob", r"\w bob   ", "\\w \t "] {
            assert_eq!(Command::parse(line), Command::WhisperUsage, "{line:?}");
        }
    }

    #[test]
    fn parse_list_and_help_ignore_following_words() {
        assert_eq!(Command::parse(r"\list"), Command::List);
        assert_eq!(Command::parse(r"\list all of them"), Command::List);
        assert_eq!(Command::parse(r"\help"), Command::Help);
        assert_eq!(Command::parse("\\help\tme"), Command::Help);
    }

    #[test]
    fn blank_lines_are_spaces_and_tabs_only() {
        assert!(is_blank(""));
        assert!(is_blank(" \t  "));
        assert!(!is_blank("\u{a0}"));
        assert!(!is_blank(" x "));
        assert!(!is_blank("\r"));
    }
}
