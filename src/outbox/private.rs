//! A member's private lines, each tagged with the room log's position when
//! it was accepted.
//!
//! The lines are copied into one buffer, back to back, with a list of runs:
//! consecutive lines with the same tag make one run. A writer copies what
//! it sends into its batch (private lines are one member's only; nothing is
//! gained by sharing them), and the queue drops what was written. An empty
//! queue holds no buffer.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

/// The capacity a fresh buffer starts with (it grows as lines come).
const INITIAL_CAPACITY: usize = 512;

#[derive(Default)]
pub(super) struct PrivateQueue {
    /// Every queued byte, in order.
    buf: BytesMut,
    /// (tag, length) of each run of lines, in order, tags not decreasing.
    runs: VecDeque<(u64, usize)>,
}

impl PrivateQueue {
    /// Bytes queued.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Queues a copy of `line`, tagged `tag` (not less than any tag queued).
    pub(super) fn push(&mut self, tag: u64, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(line.len().max(INITIAL_CAPACITY));
        }
        self.buf.extend_from_slice(line);
        match self.runs.back_mut() {
            Some((last, len)) if *last == tag => *len += line.len(),
            _ => self.runs.push_back((tag, line.len())),
        }
    }

    /// The runs, in order: each tag and its bytes.
    pub(super) fn runs(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut at = 0;
        self.runs.iter().map(move |&(tag, len)| {
            let run = &self.buf[at..at + len];
            at += len;
            (tag, run)
        })
    }

    /// Drops the first `n` bytes (written by the writer).
    pub(super) fn consume(&mut self, n: usize) {
        let mut n = n.min(self.buf.len());
        if n == self.buf.len() {
            // An idle member holds no buffer.
            self.buf = BytesMut::new();
            self.runs.clear();
            return;
        }
        self.buf.advance(n);
        while n > 0 {
            let Some((_, len)) = self.runs.front_mut() else {
                break;
            };
            if *len > n {
                *len -= n;
                break;
            }
            n -= *len;
            self.runs.pop_front();
        }
    }

    /// Tags every queued line `tag` (they are all due before anything
    /// tagged later).
    pub(super) fn retag(&mut self, tag: u64) {
        let len = self.buf.len();
        self.runs.clear();
        if len > 0 {
            self.runs.push_back((tag, len));
        }
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        *self = PrivateQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(q: &PrivateQueue) -> Vec<(u64, Vec<u8>)> {
        q.runs().map(|(t, b)| (t, b.to_vec())).collect()
    }

    #[test]
    fn lines_with_one_tag_share_a_run() {
        let mut q = PrivateQueue::default();
        q.push(3, b"a\n");
        q.push(3, b"b\n");
        q.push(7, b"c\n");
        assert_eq!(q.len(), 6);
        assert_eq!(
            contents(&q),
            [(3, b"a\nb\n".to_vec()), (7, b"c\n".to_vec())]
        );
        q.consume(3);
        assert_eq!(contents(&q), [(3, b"\n".to_vec()), (7, b"c\n".to_vec())]);
        q.consume(3);
        assert_eq!(q.len(), 0);
        assert_eq!(q.buf.capacity(), 0, "an empty queue holds no buffer");
    }

    #[test]
    fn retagging_makes_one_run() {
        let mut q = PrivateQueue::default();
        q.push(1, b"x\n");
        q.push(2, b"y\n");
        q.retag(0);
        assert_eq!(contents(&q), [(0, b"x\ny\n".to_vec())]);
    }
}
