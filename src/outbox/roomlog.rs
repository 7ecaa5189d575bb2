//! The room log: one copy of each public event for the whole room.
//!
//! Every public event (a join notice, a batch of public lines, a leave
//! notice) is appended once, in the room's order, to a tail buffer with a
//! large capacity. The bytes appended since the last read are frozen into a
//! [`Bytes`] *piece* when a reader first needs them; pieces share their
//! chunk's allocation, and a chunk is freed once no piece and no writer
//! refers to it.
//!
//! Each reader (a member's outbox) has a cursor: the log position of the
//! next byte it has to write. A reader's backlog, for the slow-consumer rule,
//! is the log's end minus its cursor, plus its private bytes. A reader whose
//! backlog passes its limit is *cut*: it is dropped from the log at once, so
//! that it no longer holds the log back. The log therefore keeps at most
//! about one limit's worth of bytes behind its end, whatever the number of
//! readers.
//!
//! Everything here runs under the log's own lock, which is taken after an
//! outbox's lock and never before one: the log never locks an outbox. What
//! it has to do to outboxes (cut them, wake them) it returns to the caller
//! in a [`Fallout`], to be done once the lock is released.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Weak;

use bytes::{Bytes, BytesMut};

use super::batch::WriteBatch;
use super::Outbox;

/// The default size of the log's chunks: 64 KiB.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// Identifies a reader of the log: a slot and the slot's generation, so
/// that a freed and reused slot is never taken for its former reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReaderId {
    index: u32,
    generation: u32,
}

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

struct Reader {
    generation: u32,
    live: bool,
    /// The log position of the next byte to write.
    cursor: u64,
    /// Where the reader stops reading (it left the room, or its outbox is
    /// closing); `u64::MAX` while it reads on.
    stop: u64,
    limit: u64,
    /// Bytes in the reader's private queue.
    private: u64,
    /// Log and private bytes the writer holds (filled, not yet consumed):
    /// they do not count toward the limit until the writer says how much
    /// of them went out.
    taken_log: u64,
    taken_private: u64,
    /// The room's name for the reader (its member id).
    tag: u64,
    outbox: Weak<Outbox>,
    /// The key under which the reader sits in `cut_order`: never more than
    /// its true key (cursor + limit - private), which only grows as the
    /// reader writes.
    cut_key: u64,
    /// Armed to be woken by the next append.
    wake_next: bool,
    /// Armed to be woken when the end reaches this position (`u64::MAX`:
    /// not armed).
    wake_at: u64,
}

impl Reader {
    /// The end position past which the reader's backlog passes its limit.
    fn true_cut_key(&self) -> u64 {
        (self.cursor + self.taken_log)
            .saturating_add(self.limit)
            .saturating_sub(self.private - self.taken_private)
    }

    /// The backlog that counts toward the limit, for a log ending at `end`.
    fn counted(&self, end: u64) -> u64 {
        end.saturating_sub(self.cursor + self.taken_log) + (self.private - self.taken_private)
    }
}

/// Where a reader stands after writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advance {
    /// It reads on.
    Reading,
    /// It has read all it will ever read from the log, and is detached.
    Finished,
    /// It was cut.
    Gone,
}

/// Why an outbox is to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeKind {
    /// New bytes in the log, for a writer that had found nothing to write.
    Next,
    /// The reader's backlog reached the level it asked to hear about.
    Level,
}

/// What an append (or a cut) leaves for the caller to do once the log's
/// lock is released: readers to cut and outboxes to wake.
#[derive(Default)]
pub(crate) struct Fallout {
    /// Readers cut for passing their limit: their tag and outbox. They are
    /// already out of the log; their outboxes are still to be aborted.
    pub(crate) cut: Vec<(u64, Weak<Outbox>)>,
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
    /// The most bytes of chunks the log may hold for the limits it has
    /// seen: one limit behind the slowest reader that is not cut, plus what
    /// is appended between two trims, a partly used chunk at either end, and
    /// the largest event (which may need a chunk of its own).
    pub fn chunk_bound(&self, largest_event: u64) -> u64 {
        let chunk = self.chunk_size as u64;
        self.max_limit + largest_event + 4 * chunk.max(largest_event)
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
    /// (cut key, slot) of every live reader, in order of cut key.
    cut_order: BTreeSet<(u64, u32)>,
    wake_next: Vec<ReaderId>,
    /// (position, slot, generation) of readers waiting for a level.
    wake_at: BTreeSet<(u64, u32, u32)>,
    /// Pieces before the slowest cursor are dropped when the end passes this.
    next_trim: u64,
    next_chunk: u64,
    max_limit: u64,
}

/// A room's shared log, behind its own lock.
pub(crate) struct RoomLog {
    core: parking_lot::Mutex<LogCore>,
}

impl RoomLog {
    /// An empty log whose chunks have `chunk_size` bytes (at least 1).
    pub(crate) fn new(chunk_size: usize) -> Self {
        RoomLog {
            core: parking_lot::Mutex::new(LogCore::new(chunk_size.max(1))),
        }
    }

    /// Locks the log.
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, LogCore> {
        self.core.lock()
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
            wake_next: Vec::new(),
            wake_at: BTreeSet::new(),
            next_trim: chunk_size as u64,
            next_chunk: 0,
            max_limit: 0,
        }
    }

    /// The log's end: the position the next appended byte will have.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    fn reader(&self, id: ReaderId) -> Option<&Reader> {
        self.readers
            .get(id.index as usize)
            .filter(|r| r.live && r.generation == id.generation)
    }

    fn reader_mut(&mut self, id: ReaderId) -> Option<&mut Reader> {
        self.readers
            .get_mut(id.index as usize)
            .filter(|r| r.live && r.generation == id.generation)
    }

    /// Adds a reader whose cursor is the log's end. `tag` is returned with
    /// it if it is ever cut.
    pub(crate) fn attach(&mut self, tag: u64, limit: usize, outbox: Weak<Outbox>) -> ReaderId {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        self.max_limit = self.max_limit.max(limit);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.readers.push(Reader {
                    generation: 0,
                    live: false,
                    cursor: 0,
                    stop: 0,
                    limit: 0,
                    private: 0,
                    taken_log: 0,
                    taken_private: 0,
                    tag: 0,
                    outbox: Weak::new(),
                    cut_key: 0,
                    wake_next: false,
                    wake_at: u64::MAX,
                });
                u32::try_from(self.readers.len() - 1).expect("fewer than 2^32 readers")
            }
        };
        let end = self.end;
        let reader = &mut self.readers[index as usize];
        reader.generation = reader.generation.wrapping_add(1);
        reader.live = true;
        reader.cursor = end;
        reader.stop = u64::MAX;
        reader.limit = limit;
        reader.private = 0;
        reader.taken_log = 0;
        reader.taken_private = 0;
        reader.tag = tag;
        reader.outbox = outbox;
        reader.wake_next = false;
        reader.wake_at = u64::MAX;
        reader.cut_key = reader.true_cut_key();
        let key = reader.cut_key;
        let generation = reader.generation;
        self.cut_order.insert((key, index));
        self.live += 1;
        ReaderId { index, generation }
    }

    /// Removes a reader (its outbox was aborted, dropped, or has written
    /// everything up to its stop).
    pub(crate) fn detach(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        reader.live = false;
        reader.outbox = Weak::new();
        let (key, at) = (reader.cut_key, reader.wake_at);
        self.cut_order.remove(&(key, id.index));
        if at != u64::MAX {
            self.wake_at.remove(&(at, id.index, id.generation));
        }
        self.free.push(id.index);
        self.live -= 1;
        if self.live == 0 {
            self.trim();
        }
    }

    /// Makes the reader stop at the log's current end: it reads nothing
    /// appended later. Returns `false` if that leaves it nothing to read
    /// from the log (it is then detached).
    pub(crate) fn stop(&mut self, id: ReaderId) -> bool {
        let end = self.end;
        let Some(reader) = self.reader_mut(id) else {
            return false;
        };
        reader.stop = reader.stop.min(end);
        if reader.cursor >= reader.stop {
            self.detach(id);
            return false;
        }
        true
    }

    /// Log bytes the reader has yet to write.
    pub(crate) fn pending(&self, id: ReaderId) -> u64 {
        self.reader(id)
            .map_or(0, |r| r.stop.min(self.end).saturating_sub(r.cursor))
    }

    /// The reader's cursor and where it stops reading (at most the end).
    pub(crate) fn span(&self, id: ReaderId) -> Option<(u64, u64)> {
        self.reader(id).map(|r| (r.cursor, r.stop.min(self.end)))
    }

    /// Checks a private line of `len` bytes against the reader's limit. If
    /// it fits (or is `exempt`), counts it and returns the position it is
    /// tagged with (the log's end); if not, detaches the reader.
    pub(crate) fn admit_private(&mut self, id: ReaderId, len: usize, exempt: bool) -> Option<u64> {
        let end = self.end;
        let len = len as u64;
        let reader = self.reader_mut(id)?;
        if !exempt && reader.counted(end).saturating_add(len) > reader.limit {
            self.detach(id);
            return None;
        }
        reader.private += len;
        self.rekey(id);
        Some(end)
    }

    /// Puts the reader under its true cut key, which may be lower than the
    /// one it sits under.
    fn rekey(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        let key = reader.true_cut_key();
        if key == reader.cut_key {
            return;
        }
        let old = std::mem::replace(&mut reader.cut_key, key);
        self.cut_order.remove(&(old, id.index));
        self.cut_order.insert((key, id.index));
    }

    /// Records that the writer holds `log` bytes of the log (from the
    /// cursor) and `private` bytes of the private queue, until it says how
    /// many went out.
    pub(crate) fn take(&mut self, id: ReaderId, log: u64, private: u64) {
        if let Some(reader) = self.reader_mut(id) {
            reader.taken_log = log;
            reader.taken_private = private.min(reader.private);
        }
    }

    /// Records that the reader wrote `log` bytes of the log and `private`
    /// bytes of its private queue; what else it held counts again.
    pub(crate) fn advance(&mut self, id: ReaderId, log: u64, private: u64) -> Advance {
        let end = self.end;
        let Some(reader) = self.reader_mut(id) else {
            return Advance::Gone;
        };
        reader.cursor += log;
        reader.private = reader.private.saturating_sub(private);
        reader.taken_log = 0;
        reader.taken_private = 0;
        debug_assert!(reader.cursor <= reader.stop.min(end));
        if reader.cursor >= reader.stop {
            self.detach(id);
            return Advance::Finished;
        }
        if reader.true_cut_key() < reader.cut_key {
            self.rekey(id);
        }
        Advance::Reading
    }

    /// Arms the reader to be woken by the next append. Does nothing if it
    /// is armed already.
    pub(crate) fn arm_next(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        if !reader.wake_next && reader.stop == u64::MAX {
            reader.wake_next = true;
            self.wake_next.push(id);
        }
    }

    /// Arms the reader to be woken once its backlog reaches `level` bytes.
    /// Returns `true` if it already has (and nothing is armed).
    pub(crate) fn arm_level(&mut self, id: ReaderId, level: usize) -> bool {
        let end = self.end;
        let Some(reader) = self.reader_mut(id) else {
            return false;
        };
        let at = (reader.cursor + level as u64).saturating_sub(reader.private);
        if at <= end {
            return true;
        }
        if reader.stop != u64::MAX {
            return false;
        }
        let old = std::mem::replace(&mut reader.wake_at, at);
        if old != u64::MAX {
            self.wake_at.remove(&(old, id.index, id.generation));
        }
        self.wake_at.insert((at, id.index, id.generation));
        false
    }

    /// Appends one event. Readers it takes past their limit are cut, and
    /// readers waiting for it are to be woken: both go to `fallout`.
    pub(crate) fn append(&mut self, event: &[u8], fallout: &mut Fallout) {
        if event.is_empty() {
            return;
        }
        if self.tail.capacity() - self.tail.len() < event.len() {
            self.freeze();
            let capacity = self.chunk_size.max(event.len());
            self.tail = BytesMut::with_capacity(capacity);
            self.chunks.push_back((self.next_chunk, capacity));
            self.next_chunk += 1;
        }
        self.tail.extend_from_slice(event);
        self.end += event.len() as u64;
        self.cut_slow_readers(fallout);
        self.collect_wakes(fallout);
        if self.end >= self.next_trim || !fallout.cut.is_empty() {
            self.trim();
        }
    }

    /// Cuts every reader whose backlog has passed its limit.
    fn cut_slow_readers(&mut self, fallout: &mut Fallout) {
        while let Some(&(key, index)) = self.cut_order.first() {
            if key >= self.end {
                break;
            }
            self.cut_order.pop_first();
            let reader = &mut self.readers[index as usize];
            let key = reader.true_cut_key();
            if key >= self.end {
                // Its key was stale: it has written since.
                reader.cut_key = key;
                self.cut_order.insert((key, index));
                continue;
            }
            let id = ReaderId {
                index,
                generation: reader.generation,
            };
            fallout.cut.push((reader.tag, reader.outbox.clone()));
            // Back in, so that detach finds it where it looks.
            self.cut_order.insert((reader.cut_key, index));
            self.detach(id);
        }
    }

    fn collect_wakes(&mut self, fallout: &mut Fallout) {
        for id in std::mem::take(&mut self.wake_next) {
            if let Some(reader) = self.reader_mut(id) {
                if reader.wake_next {
                    reader.wake_next = false;
                    fallout.wake.push((reader.outbox.clone(), WakeKind::Next));
                }
            }
        }
        while let Some(&(at, index, generation)) = self.wake_at.first() {
            if at > self.end {
                break;
            }
            self.wake_at.pop_first();
            if let Some(reader) = self.reader_mut(ReaderId { index, generation }) {
                reader.wake_at = u64::MAX;
                fallout.wake.push((reader.outbox.clone(), WakeKind::Level));
            }
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
        let slowest = self
            .readers
            .iter()
            .filter(|r| r.live)
            .map(|r| r.cursor)
            .min()
            .unwrap_or(self.end);
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
            batch.push_log(piece.bytes.slice(offset..offset + take));
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
