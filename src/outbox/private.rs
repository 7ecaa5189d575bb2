//! A member's private lines, each tagged with the room log's position when
//! it was accepted.
//!
//! Lines pushed with the same tag are copied into one buffer, back to back;
//! the buffer is frozen into a shared piece when a writer takes it, so a
//! writer sends a run of private lines with one I/O vector.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The capacity a fresh buffer starts with (it grows as lines come).
const INITIAL_CAPACITY: usize = 512;
/// The largest buffer allocated ahead of need.
const MAX_CAPACITY: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct PrivateQueue {
    /// Frozen runs of lines: (tag, bytes), in order, tags not decreasing.
    frozen: VecDeque<(u64, Bytes)>,
    /// Lines not frozen yet, all tagged `tail_tag`.
    tail: BytesMut,
    tail_tag: u64,
    /// Bytes queued in all.
    len: usize,
}

impl PrivateQueue {
    /// Bytes queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Queues a copy of `line`, tagged `tag` (not less than any tag queued).
    pub(super) fn push(&mut self, tag: u64, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        if !self.tail.is_empty() && self.tail_tag != tag {
            self.freeze();
        }
        if self.tail.capacity() - self.tail.len() < line.len() {
            self.freeze();
            let grown = (2 * self.tail.capacity()).clamp(INITIAL_CAPACITY, MAX_CAPACITY);
            self.tail = BytesMut::with_capacity(line.len().max(grown));
        }
        self.tail_tag = tag;
        self.tail.extend_from_slice(line);
        self.len += line.len();
    }

    /// Freezes the lines not frozen yet, so that [`PrivateQueue::runs`]
    /// sees every line.
    pub(super) fn freeze(&mut self) {
        if !self.tail.is_empty() {
            self.frozen
                .push_back((self.tail_tag, self.tail.split().freeze()));
        }
    }

    /// The frozen runs, in order (call [`PrivateQueue::freeze`] first).
    pub(super) fn runs(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.frozen.iter()
    }

    /// Drops the first `n` bytes (written by the writer; they are frozen).
    pub(super) fn consume(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some((_, front)) = self.frozen.front_mut() else {
                // Only reached if the tail was not frozen: take from it.
                self.tail.advance(n);
                break;
            };
            if front.len() > n {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.frozen.pop_front();
        }
        if self.len == 0 {
            self.frozen.clear();
            // An idle member holds no buffer.
            self.tail = BytesMut::new();
        }
    }

    /// Tags every queued line `tag` (they are all due before anything
    /// tagged later).
    pub(super) fn retag(&mut self, tag: u64) {
        for run in &mut self.frozen {
            run.0 = tag;
        }
        self.tail_tag = tag;
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        *self = PrivateQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(q: &mut PrivateQueue) -> Vec<(u64, Vec<u8>)> {
        q.freeze();
        q.runs().map(|(t, b)| (*t, b.to_vec())).collect()
    }

    #[test]
    fn lines_with_one_tag_share_a_run() {
        let mut q = PrivateQueue::default();
        q.push(3, b"a\n");
        q.push(3, b"b\n");
        q.push(7, b"c\n");
        assert_eq!(q.len(), 6);
        assert_eq!(
            contents(&mut q),
            [(3, b"a\nb\n".to_vec()), (7, b"c\n".to_vec())]
        );
        q.consume(3);
        assert_eq!(
            contents(&mut q),
            [(3, b"\n".to_vec()), (7, b"c\n".to_vec())]
        );
        q.consume(3);
        assert_eq!(q.len(), 0);
        assert_eq!(q.tail.capacity(), 0, "an empty queue holds no buffer");
    }

    #[test]
    fn a_long_line_gets_a_buffer_of_its_own() {
        let mut q = PrivateQueue::default();
        let long = vec![b'x'; 100_000];
        q.push(0, b"short\n");
        q.push(0, &long);
        assert_eq!(q.len(), 100_006);
        let runs = contents(&mut q);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].1.len(), 100_000);
    }
}
