//! What a writer takes from an outbox for one write: shared pieces of the
//! room log and private lines, in the order the member is to receive them.

use std::fmt;
use std::io::{self, IoSlice, Write};

use bytes::{Bytes, BytesMut};

use super::roomlog::ReaderId;

/// The most parts (I/O vectors) one batch holds by default.
pub const DEFAULT_BATCH_PARTS: usize = 64;
/// The most bytes one batch holds by default: 256 KiB.
pub const DEFAULT_BATCH_BYTES: usize = 256 * 1024;
/// Runs of the log shorter than this are copied into the batch's own
/// buffer, back to back, rather than referred to one by one: a write of
/// many short I/O vectors costs the kernel more than the copy (and a shared
/// reference costs an atomic count each way).
const SMALL: usize = 1024;
/// The capacity the batch's own buffer is given at a time.
const SCRATCH: usize = 16 * 1024;

/// Where a part of a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Log,
    Private,
}

/// The bytes a writer is to send next for one outbox, gathered by
/// [`Outbox::fill`](super::Outbox::fill): long runs of the room log are
/// referred to in its shared memory; short runs of the log and private
/// lines are copied together into the batch's own (reused) buffer.
///
/// A writer writes the batch ([`WriteBatch::write_to`], one vectored write),
/// then tells the outbox how many bytes went out with
/// [`Outbox::consume`](super::Outbox::consume). One batch can serve many
/// outboxes in turn (an event loop keeps one): `fill` empties it first.
///
/// ```
/// use std::sync::Arc;
/// use chatcore::{ChatRoom, Outbox};
/// use chatcore::outbox::WriteBatch;
///
/// let room = ChatRoom::new();
/// let outbox = Arc::new(Outbox::new(1 << 20));
/// room.join("ana", outbox.clone())?;
/// let mut batch = WriteBatch::new();
/// outbox.fill(&mut batch);
/// let mut socket = Vec::new();
/// let written = batch.write_to(&mut socket)?;
/// outbox.consume(&mut batch, written);
/// assert_eq!(socket, b"Welcome to the chat, ana!\nana has joined the chat.\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WriteBatch {
    pub(super) parts: Vec<Bytes>,
    pub(super) sources: Vec<Source>,
    pub(super) len: usize,
    max_parts: usize,
    max_bytes: usize,
    /// The log reader the log parts were read for, if any.
    pub(super) reader: Option<ReaderId>,
    /// Short runs of the log, and private lines, copied together; while
    /// `gathering` is set, the last of them are not a part yet (and come
    /// from that source).
    scratch: BytesMut,
    gathering: Option<Source>,
}

impl WriteBatch {
    /// A batch of at most [`DEFAULT_BATCH_PARTS`] parts and
    /// [`DEFAULT_BATCH_BYTES`] bytes.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_BATCH_PARTS, DEFAULT_BATCH_BYTES)
    }

    /// A batch of at most `max_parts` parts (at least 1) and `max_bytes`
    /// bytes (at least 1).
    pub fn with_limits(max_parts: usize, max_bytes: usize) -> Self {
        WriteBatch {
            parts: Vec::new(),
            sources: Vec::new(),
            len: 0,
            max_parts: max_parts.max(1),
            max_bytes: max_bytes.max(1),
            reader: None,
            scratch: BytesMut::new(),
            gathering: None,
        }
    }

    /// A batch with no limits, that takes all an outbox has.
    pub fn unbounded() -> Self {
        Self::with_limits(usize::MAX, usize::MAX)
    }

    /// Bytes in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch's parts, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Empties the batch (letting go of the memory it refers to).
    pub fn clear(&mut self) {
        self.parts.clear();
        self.sources.clear();
        self.len = 0;
        self.reader = None;
        self.scratch.clear();
        self.gathering = None;
    }

    /// Writes the batch with one write (vectored if it has several parts,
    /// at most [`DEFAULT_BATCH_PARTS`] of them at a time); returns the bytes
    /// written.
    /// The batch is unchanged: pass that count to
    /// [`Outbox::consume`](super::Outbox::consume).
    pub fn write_to<W: Write + ?Sized>(&self, writer: &mut W) -> io::Result<usize> {
        if let [part] = &self.parts[..] {
            // One buffer: a plain write costs the kernel less than a
            // vectored one.
            return writer.write(part);
        }
        let mut slices = [IoSlice::new(&[]); DEFAULT_BATCH_PARTS];
        let n = self.parts.len().min(DEFAULT_BATCH_PARTS);
        for (slice, part) in slices.iter_mut().zip(&self.parts) {
            *slice = IoSlice::new(part);
        }
        writer.write_vectored(&slices[..n])
    }

    /// Appends the batch's bytes to `out` (a copy).
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        for part in &self.parts {
            out.extend_from_slice(part);
        }
    }

    /// How many more bytes the batch takes.
    pub(super) fn room(&self) -> usize {
        if self.parts.len() + usize::from(self.gathering.is_some()) >= self.max_parts {
            0
        } else {
            self.max_bytes - self.len
        }
    }

    /// Pushes `range` of a run of the log: copied into the batch's buffer
    /// if it is short, referred to if not.
    pub(super) fn push_log(&mut self, run: &Bytes, range: std::ops::Range<usize>) {
        if range.len() >= SMALL {
            self.seal();
            self.push(run.slice(range), Source::Log);
        } else {
            self.copy(&run[range], Source::Log);
        }
    }

    /// Pushes (a copy of a prefix of, within the batch's room) a run of
    /// private lines; returns whether all of it went in.
    pub(super) fn push_private(&mut self, run: &[u8]) -> bool {
        let room = self.room();
        let n = run.len().min(room);
        self.copy(&run[..n], Source::Private);
        n == run.len()
    }

    /// Copies `bytes` into the batch's buffer, after what is there.
    fn copy(&mut self, bytes: &[u8], source: Source) {
        if bytes.is_empty() {
            return;
        }
        if self.gathering.is_some_and(|s| s != source) {
            self.seal();
        }
        if self.scratch.capacity() - self.scratch.len() < bytes.len() {
            // Takes back the buffer's whole allocation once no part refers
            // to it any more.
            self.scratch.reserve(SCRATCH.max(bytes.len()));
        }
        self.scratch.extend_from_slice(bytes);
        self.len += bytes.len();
        self.gathering = Some(source);
    }

    /// Turns what was copied so far into a part.
    pub(super) fn seal(&mut self) {
        if let Some(source) = self.gathering.take() {
            self.parts.push(self.scratch.split().freeze());
            self.sources.push(source);
        }
    }

    fn push(&mut self, bytes: Bytes, source: Source) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.parts.push(bytes);
        self.sources.push(source);
    }

    /// Log bytes and private bytes in the batch.
    pub(super) fn totals(&self) -> (u64, u64) {
        self.split_written(self.len)
    }

    /// Splits the first `n` bytes into log bytes and private bytes.
    pub(super) fn split_written(&self, n: usize) -> (u64, u64) {
        let (mut log, mut private) = (0u64, 0u64);
        let mut left = n.min(self.len);
        for (part, source) in self.parts.iter().zip(&self.sources) {
            if left == 0 {
                break;
            }
            let k = part.len().min(left);
            match source {
                Source::Log => log += k as u64,
                Source::Private => private += k as u64,
            }
            left -= k;
        }
        (log, private)
    }
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch::new()
    }
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("parts", &self.parts.len())
            .field("len", &self.len)
            .finish()
    }
}
