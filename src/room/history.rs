//! The room's latest public lines, for `--history`: a bounded ring of
//! rendered lines, replayed to a joining member.

use std::collections::VecDeque;

/// The last `cap` public lines, as sent (`<name>: <text>\n`), in the room's
/// order. The lines share one buffer (no allocation per line once it has
/// grown), so the memory is about `cap` rendered lines at most.
#[derive(Debug, Default)]
pub(super) struct History {
    /// How many lines are kept (0: none, and nothing is copied).
    cap: usize,
    /// The lines, back to back.
    bytes: VecDeque<u8>,
    /// Each line's length, oldest first.
    lens: VecDeque<usize>,
}

impl History {
    pub(super) fn new(cap: usize) -> Self {
        History {
            cap,
            ..History::default()
        }
    }

    /// How many lines are kept at most.
    pub(super) fn cap(&self) -> usize {
        self.cap
    }

    /// Keeps a rendered line, forgetting the oldest past the cap.
    pub(super) fn push(&mut self, line: &[u8]) {
        if self.cap == 0 {
            return;
        }
        if self.lens.len() == self.cap {
            if let Some(old) = self.lens.pop_front() {
                self.bytes.drain(..old);
            }
        }
        self.bytes.extend(line);
        self.lens.push_back(line.len());
    }

    /// Appends to `out` the newest lines that fit in `budget` bytes, oldest
    /// first.
    pub(super) fn replay_into(&self, out: &mut Vec<u8>, budget: usize) {
        let mut size = 0;
        for &len in self.lens.iter().rev() {
            if size + len > budget {
                break;
            }
            size += len;
        }
        let start = self.bytes.len() - size;
        let (front, back) = self.bytes.as_slices();
        if start < front.len() {
            out.extend_from_slice(&front[start..]);
            out.extend_from_slice(back);
        } else {
            out.extend_from_slice(&back[start - front.len()..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(h: &History, budget: usize) -> String {
        let mut out = Vec::new();
        h.replay_into(&mut out, budget);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn keeps_the_last_cap_lines_in_order() {
        let mut h = History::new(3);
        for i in 0..10 {
            h.push(format!("a: {i}\n").as_bytes());
        }
        assert_eq!(replay(&h, usize::MAX), "a: 7\na: 8\na: 9\n");
        assert_eq!(h.bytes.len(), 15, "only the kept lines' bytes");
    }

    #[test]
    fn the_budget_keeps_the_newest_whole_lines() {
        let mut h = History::new(10);
        for line in ["a: 1\n", "a: 22\n", "a: 333\n"] {
            h.push(line.as_bytes());
        }
        assert_eq!(replay(&h, 13), "a: 22\na: 333\n");
        assert_eq!(replay(&h, 12), "a: 333\n");
        assert_eq!(replay(&h, 6), "");
    }

    #[test]
    fn a_cap_of_zero_keeps_nothing() {
        let mut h = History::new(0);
        h.push(b"a: 1\n");
        assert_eq!(replay(&h, usize::MAX), "");
        assert!(h.bytes.is_empty());
    }
}
