//! Checks the join and leave notices a member reads while others churn.
//!
//! Every name the generator uses is `<prefix><index>` (a steady member) or
//! `<prefix>z<number>` (one stay of a churning member), so a notice whose
//! name is neither is malformed. A member that was in the room before the
//! churn began also checks each churning name's life: joined once, then
//! left once, in that order. Steady members' leave notices are not checked:
//! they come as the run stops.

use std::collections::HashSet;

/// The tail of a join announcement.
const JOINED: &[u8] = b" has joined the chat.";
/// The tail of a leave notice.
const LEFT: &[u8] = b" has left the chat.";

/// Who a notice names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Who {
    Steady,
    /// A churning member's stay, by its number.
    Churner(u64),
}

/// The name of one stay of a churning member.
pub fn churner_name(prefix: &str, n: u64) -> String {
    format!("{prefix}z{n}")
}

/// Parses digits only (1 to 19 of them).
fn digits(p: &[u8]) -> Option<u64> {
    if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(p).ok()?.parse().ok()
}

/// One member's notice checker.
#[derive(Debug)]
pub struct Notices {
    prefix: Vec<u8>,
    /// Whether to check each churning name's join-then-leave life (only a
    /// member that saw the churn from its start can).
    track: bool,
    present: HashSet<u64>,
    /// Notices that failed a check.
    pub bad: u64,
    pub first_bad: Option<String>,
}

impl Notices {
    pub fn new(prefix: &str, track: bool) -> Self {
        Notices {
            prefix: prefix.as_bytes().to_vec(),
            track,
            present: HashSet::new(),
            bad: 0,
            first_bad: None,
        }
    }

    fn who(&self, name: &[u8]) -> Option<Who> {
        let rest = name.strip_prefix(self.prefix.as_slice())?;
        match rest.strip_prefix(b"z") {
            Some(n) => digits(n).map(Who::Churner),
            None => digits(rest).map(|_| Who::Steady),
        }
    }

    fn fail(&mut self, why: &str, line: &[u8]) {
        self.bad += 1;
        if self.first_bad.is_none() {
            let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
            self.first_bad = Some(format!("{why}: {text}"));
        }
    }

    /// Checks a line the protocol module classified as a join announcement.
    pub fn joined(&mut self, line: &[u8]) {
        let Some(name) = line.strip_suffix(JOINED) else {
            return self.fail("not a join notice", line);
        };
        match self.who(name) {
            None => self.fail("join of an unknown name", line),
            Some(Who::Churner(n)) if self.track && !self.present.insert(n) => {
                self.fail("joined twice", line)
            }
            Some(_) => {}
        }
    }

    /// Checks a line the protocol module classified as a leave notice.
    pub fn left(&mut self, line: &[u8]) {
        let Some(name) = line.strip_suffix(LEFT) else {
            return self.fail("not a leave notice", line);
        };
        match self.who(name) {
            None => self.fail("leave of an unknown name", line),
            Some(Who::Churner(n)) if self.track && !self.present.remove(&n) => {
                self.fail("left without having joined", line)
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_churning_name_joins_then_leaves_once() {
        let mut n = Notices::new("b", true);
        n.joined(b"b3 has joined the chat.");
        n.joined(b"bz7 has joined the chat.");
        n.left(b"bz7 has left the chat.");
        n.left(b"b3 has left the chat.");
        assert_eq!(n.bad, 0, "{:?}", n.first_bad);
        n.left(b"bz7 has left the chat.");
        assert_eq!(n.bad, 1);
        n.joined(b"bz8 has joined the chat.");
        n.joined(b"bz8 has joined the chat.");
        assert_eq!(n.bad, 2);
        assert!(n
            .first_bad
            .as_deref()
            .is_some_and(|w| w.starts_with("left without")));
    }

    #[test]
    fn malformed_names_are_caught() {
        let mut n = Notices::new("b", false);
        for line in [
            &b"ana has joined the chat."[..],
            b"bz has joined the chat.",
            b"bzx1 has left the chat.",
            b"b has left the chat.",
            b"b1: has joined the chat.",
        ] {
            let before = n.bad;
            if line.ends_with(JOINED) {
                n.joined(line);
            } else {
                n.left(line);
            }
            assert_eq!(n.bad, before + 1, "{}", String::from_utf8_lossy(line));
        }
        // Without tracking, a leave with no join seen is fine.
        n.left(b"bz9 has left the chat.");
        assert_eq!(n.bad, 5);
        assert_eq!(churner_name("b", 12), "bz12");
    }
}
