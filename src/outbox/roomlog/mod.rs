//! The room log: one copy of each public event for the whole room.
//!
//! Every public event (a join notice, a batch of public lines, a leave
//! notice) is appended once, in the room's order, to a tail buffer with a
//! large capacity (a *chunk*). The bytes appended since the last read are
//! frozen into a [`Bytes`] *piece* when a reader first needs them; pieces
//! share their chunk's allocation, and a chunk is freed once no piece and no
//! writer refers to it.
//!
//! Each reader (a member's outbox) has a cursor: the log position of the
//! next byte it has to write. Its backlog, for the slow-consumer rule, is
//! the log's end minus its cursor, plus its private bytes, less what its
//! writer holds (see [`readers`]). A reader whose backlog passes its limit is
//! *cut* by the append that takes it over: it is dropped from the log at
//! once, so that it no longer holds the log back. The log therefore keeps
//! about one limit's worth of bytes behind its end, plus a few chunks,
//! whatever the number of readers.
//!
//! Everything here runs under the log's own lock, which is taken after an
//! outbox's lock and never before one: the log never locks an outbox. What
//! it has to do to outboxes (cut them, wake them) it returns to the caller
//! in a [`Fallout`], to be done once the lock is released.

mod readers;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Weak;

use bytes::{Bytes, BytesMut};

use super::batch::WriteBatch;
use super::Outbox;
use readers::Reader;
pub(crate) use readers::{ReaderCell, ReaderId, UNSET};

/// The default size of the log's chunks: 64 KiB.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// A frozen run of the log's bytes.
struct Piece {
    start: u64,
    bytes: Bytes,
    chunk: u64,
}

impl Piece {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Why an outbox is to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeKind {
    /// New bytes in the log, for a writer that had found nothing to write.
    Next,
    /// The reader's backlog reached its urgent level.
    Urgent,
}

/// What an append leaves for the caller to do once the log's lock is
/// released: readers to cut and outboxes to wake.
#[derive(Default)]
pub(crate) struct Fallout {
    /// Readers cut for passing their limit: their tag and outbox. They are
    /// already out of the log; their outboxes are still to be aborted, and
    /// their members removed.
    pub(crate) cut: Vec<(u64, Weak<Outbox>)>,
    /// Readers that had stopped reading (their members left, or their
    /// outboxes are closing) and were cut: only their outboxes are to be
    /// aborted.
    pub(crate) abort: Vec<Weak<Outbox>>,
    /// Outboxes to wake.
    pub(crate) wake: Vec<(Weak<Outbox>, WakeKind)>,
}

/// Figures about a room log's memory, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogStats {
    /// Bytes appended since the room was created: the log's end position.
    pub end: u64,
    /// The log position of the oldest byte still kept.
    pub start: u64,
    /// Bytes kept (from `start` to `end`).
    pub kept_bytes: u64,
    /// Bytes of the chunks the log holds (allocated, used or not).
    pub chunk_bytes: u64,
    /// Readers (members, and former members still writing) in the log.
    pub readers: usize,
    /// The size of a chunk.
    pub chunk_size: usize,
    /// The largest limit of any reader the log has had.
    pub max_limit: u64,
}

impl LogStats {
    /// The most bytes of chunks the log may hold, given the largest event
    /// appended, while no writer holds any (a writer adds what it holds,
    /// at most one write's worth). When the log trims, no reader that is
    /// not cut is more than its limit behind the end; the end moves on by
    /// less than a chunk and an event between two trims; and the chunks at
    /// either end may be partly used.
    pub fn chunk_bound(&self, largest_event: u64) -> u64 {
        self.max_limit + largest_event + 3 * self.chunk_size as u64
    }
}

/// The log proper. Its users hold [`RoomLog`]'s lock.
pub(crate) struct LogCore {
    chunk_size: usize,
    pieces: VecDeque<Piece>,
    /// Live chunks, oldest first: (id, capacity).
    chunks: VecDeque<(u64, usize)>,
    /// Appended bytes not frozen yet: positions `frozen..end`.
    tail: BytesMut,
    frozen: u64,
    end: u64,
    readers: Vec<Reader>,
    free: Vec<u32>,
    live: usize,
    /// (key, slot) of every live reader: cut once the end passes its key.
    cut_order: BTreeSet<(u64, u32)>,
    /// (key, slot) of readers to be told once the end reaches their key.
    urgent_order: BTreeSet<(u64, u32)>,
    /// Readers to wake on the next append.
    wake_next: Vec<ReaderId>,
    /// Pieces before the slowest cursor are dropped when the end passes this.
    next_trim: u64,
    next_chunk: u64,
    max_limit: u64,
}

/// A room's shared log, behind its own lock, and its end, published.
pub(crate) struct RoomLog {
    core: parking_lot::Mutex<LogCore>,
    /// The log's end, stored by each append before its lock is released:
    /// what a private line accepted now is tagged with.
    end: AtomicU64,
}

impl RoomLog {
    /// An empty log whose chunks have `chunk_size` bytes (at least 1).
    pub(crate) fn new(chunk_size: usize) -> Self {
        RoomLog {
            core: parking_lot::Mutex::new(LogCore::new(chunk_size.max(1))),
            end: AtomicU64::new(0),
        }
    }

    /// Locks the log.
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, LogCore> {
        self.core.lock()
    }

    /// The log's end, without its lock.
    pub(crate) fn end(&self) -> u64 {
        self.end.load(SeqCst)
    }

    /// Appends one event (see [`LogCore::append`]).
    pub(crate) fn append(&self, event: &[u8], fallout: &mut Fallout) {
        let mut core = self.core.lock();
        core.append(event, fallout);
        self.end.store(core.end, SeqCst);
    }
}

impl LogCore {
    fn new(chunk_size: usize) -> Self {
        LogCore {
            chunk_size,
            pieces: VecDeque::new(),
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            frozen: 0,
            end: 0,
            readers: Vec::new(),
            free: Vec::new(),
            live: 0,
            cut_order: BTreeSet::new(),
            urgent_order: BTreeSet::new(),
            wake_next: Vec::new(),
            next_trim: chunk_size as u64,
            next_chunk: 0,
            max_limit: 0,
        }
    }

    /// The log's end: the position the next appended byte will have.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Appends one event. Readers it takes past their limit are cut, and
    /// readers waiting for it are to be woken: both go to `fallout`.
    fn append(&mut self, event: &[u8], fallout: &mut Fallout) {
        if event.is_empty() {
            return;
        }
        // Every chunk is filled to the brim: an event that does not fit
        // goes on in the next chunk.
        let mut rest = event;
        while !rest.is_empty() {
            let room = self.tail.capacity() - self.tail.len();
            if room == 0 {
                self.freeze();
                self.tail = BytesMut::with_capacity(self.chunk_size);
                self.chunks.push_back((self.next_chunk, self.chunk_size));
                self.next_chunk += 1;
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.tail.extend_from_slice(now);
            self.end += now.len() as u64;
            rest = later;
        }
        self.cut_slow_readers(fallout);
        self.collect_wakes(fallout);
        if self.end >= self.next_trim || !fallout.cut.is_empty() || !fallout.abort.is_empty() {
            self.trim();
        }
    }

    /// Turns the bytes appended since the last freeze into a piece.
    fn freeze(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        let bytes = self.tail.split().freeze();
        let chunk = self.next_chunk - 1;
        self.pieces.push_back(Piece {
            start: self.frozen,
            bytes,
            chunk,
        });
        self.frozen = self.end;
    }

    /// Drops the pieces that every reader has written, and the chunks they
    /// leave unused.
    fn trim(&mut self) {
        self.next_trim = self.end + self.chunk_size as u64;
        if self.live == 0 {
            // Nobody reads, and a newcomer starts at the end: keep nothing.
            self.pieces.clear();
            self.chunks.clear();
            self.tail = BytesMut::new();
            self.frozen = self.end;
            return;
        }
        let slowest = self.slowest_cursor();
        while self.pieces.front().is_some_and(|p| p.end() <= slowest) {
            self.pieces.pop_front();
        }
        if let Some(oldest) = self.pieces.front().map(|p| p.chunk) {
            while self.chunks.front().is_some_and(|&(id, _)| id < oldest) {
                self.chunks.pop_front();
            }
        } else {
            // Only the tail's chunk (if any) is left.
            while self.chunks.len() > 1 {
                self.chunks.pop_front();
            }
        }
    }

    /// Pushes onto `batch` the log's bytes from `from` up to `to` (at most
    /// the end), within the batch's limits. Returns the position reached.
    pub(crate) fn read(&mut self, from: u64, to: u64, batch: &mut WriteBatch) -> u64 {
        let to = to.min(self.end);
        if from >= to {
            return from;
        }
        if to > self.frozen {
            self.freeze();
        }
        let mut pos = from;
        let mut i = self.pieces.partition_point(|p| p.end() <= pos);
        while pos < to {
            let Some(piece) = self.pieces.get(i) else {
                debug_assert!(false, "log bytes {pos}..{to} are not kept");
                break;
            };
            debug_assert!(piece.start <= pos);
            let offset = (pos - piece.start) as usize;
            let wanted = (piece.end().min(to) - pos) as usize;
            let take = wanted.min(batch.room());
            if take == 0 {
                break;
            }
            batch.push_log(&piece.bytes, offset..offset + take);
            pos += take as u64;
            if take < wanted {
                break;
            }
            i += 1;
        }
        pos
    }

    /// Figures about the log's memory.
    pub(crate) fn stats(&self) -> LogStats {
        let start = self.pieces.front().map_or(self.frozen, |p| p.start);
        LogStats {
            end: self.end,
            start,
            kept_bytes: self.end - start,
            chunk_bytes: self.chunks.iter().map(|&(_, c)| c as u64).sum(),
            readers: self.live,
            chunk_size: self.chunk_size,
            max_limit: self.max_limit,
        }
    }
}
