//! The log's readers: the cut and urgency rules, and wake-ups.
//!
//! A reader's *counted* backlog is what counts toward its limit: the log
//! bytes from its cursor to the end plus its private bytes, less what its
//! writer holds (filled and not yet consumed: it is being written) and less
//! one exempt reply (see [`Outbox::push_reply`](crate::Outbox::push_reply)).
//! A reader is cut once its counted backlog passes its limit, and told once
//! it reaches its urgent level.
//!
//! The outbox keeps its own accounts (cursor, private bytes) under its own
//! lock, and publishes two *keys* in a [`ReaderCell`]: the log end at which
//! its backlog would pass the limit, and the end at which it would reach the
//! urgent level. Checking every reader on every append would cost as much
//! as copying the line to each; instead each reader sits in an ordered set
//! under a lower bound of its key, and an append looks only at the readers
//! whose bound it passed, reading their published key to put the bound
//! right. A bound sits an *allowance* below the key, so that a private line
//! or a short write, which lower the key a little, need not take the log's
//! lock; an outbox whose key falls below its bound re-keys under the lock.
//!
//! Key and bound are a store-then-load pair on each side, with a fence in
//! between: an outbox that lowers its key stores it, then loads the bound
//! (and re-keys if the key fell below it); the log stores a bound, then
//! loads the key again (and lowers the bound if the key fell below it). At
//! least one side sees the other's write, so a bound is never left above
//! its key.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use super::{Fallout, LogCore, WakeKind};
use crate::outbox::Outbox;

/// Not in a set.
pub(crate) const UNSET: u64 = u64::MAX;

/// Identifies a reader of the log: a slot and the slot's generation, so
/// that a freed and reused slot is never taken for its former reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReaderId {
    index: u32,
    generation: u32,
}

/// What a reader and the log share without the log's lock. What the
/// outbox writes all the time (its cursor and keys) is on one cache line,
/// what the log writes now and then on another, so that reading the one
/// does not wait for the other.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct ReaderCell {
    /// The log position of the next byte the reader writes.
    pub(crate) cursor: AtomicU64,
    /// The log end past which the counted backlog passes the limit.
    pub(crate) cut_key: AtomicU64,
    /// The log end at which the counted backlog reaches the urgent level.
    pub(crate) urgent_key: AtomicU64,
    _line: [u64; 5],
    /// The bounds it sits under in the log's sets ([`UNSET`]: not in it).
    pub(crate) cut_bound: AtomicU64,
    pub(crate) urgent_bound: AtomicU64,
    /// Armed to be woken by the next append.
    pub(crate) armed: AtomicBool,
    /// It stopped reading (its member left, or its outbox is closing): if
    /// cut, there is no member to remove.
    pub(crate) stopped: AtomicBool,
}

impl ReaderCell {
    /// Puts a bound `allowance` below the published `key` (see [`lower`]),
    /// and keeps it under the key should the outbox lower the key meanwhile
    /// (the log's half of the store-then-load pair). Returns the bound.
    fn settle(key: &AtomicU64, bound: &AtomicU64, allowance: u64, floor: u64) -> u64 {
        let mut at = lower(key.load(SeqCst), allowance, floor);
        loop {
            bound.store(at, SeqCst);
            fence(SeqCst);
            let now = key.load(SeqCst);
            if now >= at {
                return at;
            }
            at = lower(now, allowance, floor);
        }
    }

    /// A cell for a reader at `cursor` with these keys.
    pub(crate) fn new(cursor: u64, cut_key: u64, urgent_key: u64) -> Self {
        ReaderCell {
            cursor: AtomicU64::new(cursor),
            cut_key: AtomicU64::new(cut_key),
            urgent_key: AtomicU64::new(urgent_key),
            _line: [0; 5],
            cut_bound: AtomicU64::new(UNSET),
            urgent_bound: AtomicU64::new(UNSET),
            armed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }
}

pub(super) struct Reader {
    generation: u32,
    live: bool,
    /// The room's name for the reader (its member id).
    tag: u64,
    outbox: Weak<Outbox>,
    cell: Option<Arc<ReaderCell>>,
    /// How far below a key its bound sits.
    cut_allowance: u64,
    urgent_allowance: u64,
}

impl Reader {
    fn vacant() -> Self {
        Reader {
            generation: 0,
            live: false,
            tag: 0,
            outbox: Weak::new(),
            cell: None,
            cut_allowance: 0,
            urgent_allowance: 0,
        }
    }

    fn cell(&self) -> &ReaderCell {
        self.cell.as_deref().expect("a live reader has a cell")
    }
}

impl LogCore {
    fn reader(&self, id: ReaderId) -> Option<&Reader> {
        self.readers
            .get(id.index as usize)
            .filter(|r| r.live && r.generation == id.generation)
    }

    /// Adds a reader whose keys are published in `cell`. `tag` is returned
    /// with it if it is ever cut.
    pub(crate) fn attach(
        &mut self,
        tag: u64,
        limit: usize,
        urgent: usize,
        outbox: Weak<Outbox>,
        cell: Arc<ReaderCell>,
    ) -> ReaderId {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        self.max_limit = self.max_limit.max(limit);
        let index = self.free.pop().unwrap_or_else(|| {
            self.readers.push(Reader::vacant());
            u32::try_from(self.readers.len() - 1).expect("fewer than 2^32 readers")
        });
        let reader = &mut self.readers[index as usize];
        let generation = reader.generation.wrapping_add(1);
        *reader = Reader {
            generation,
            live: true,
            tag,
            outbox,
            cell: Some(cell),
            // An eighth of the distance: small lines and short writes stay
            // within it.
            cut_allowance: limit / 8,
            urgent_allowance: urgent as u64 / 8,
        };
        self.live += 1;
        let id = ReaderId { index, generation };
        self.rekey(id);
        self.arm_urgent(id);
        id
    }

    /// Removes a reader (its outbox was aborted, dropped, or has written
    /// everything up to its stop).
    pub(crate) fn detach(&mut self, id: ReaderId) {
        if self.reader(id).is_none() {
            return;
        }
        let reader = &mut self.readers[id.index as usize];
        reader.live = false;
        reader.outbox = Weak::new();
        if let Some(cell) = reader.cell.take() {
            let (cut, urgent) = (cell.cut_bound.load(SeqCst), cell.urgent_bound.load(SeqCst));
            if cut != UNSET {
                self.cut_order.remove(&(cut, id.index));
            }
            if urgent != UNSET {
                self.urgent_order.remove(&(urgent, id.index));
            }
            cell.cut_bound.store(UNSET, SeqCst);
            cell.urgent_bound.store(UNSET, SeqCst);
        }
        self.free.push(id.index);
        self.live -= 1;
        if self.live == 0 {
            self.trim();
        }
    }

    /// Whether the reader is still in the log (it was not cut).
    pub(crate) fn is_reading(&self, id: ReaderId) -> bool {
        self.reader(id).is_some()
    }

    /// Puts the reader's bounds at or below its published keys (an outbox
    /// calls it when a key fell below its bound).
    pub(crate) fn rekey(&mut self, id: ReaderId) {
        let end = self.end;
        let Some(reader) = self.reader(id) else {
            return;
        };
        let cell = Arc::clone(reader.cell.as_ref().expect("a live reader has a cell"));
        let (cut_allowance, urgent_allowance) = (reader.cut_allowance, reader.urgent_allowance);
        let old = cell.cut_bound.load(SeqCst);
        let cut = ReaderCell::settle(&cell.cut_key, &cell.cut_bound, cut_allowance, end);
        if old != cut {
            if old != UNSET {
                self.cut_order.remove(&(old, id.index));
            }
            self.cut_order.insert((cut, id.index));
        }
        let old = cell.urgent_bound.load(SeqCst);
        if old != UNSET {
            let urgent = lower(cell.urgent_key.load(SeqCst), urgent_allowance, end);
            if urgent < old {
                let urgent =
                    ReaderCell::settle(&cell.urgent_key, &cell.urgent_bound, urgent_allowance, end);
                self.urgent_order.remove(&(old, id.index));
                self.urgent_order.insert((urgent, id.index));
            }
        }
    }

    /// Arms the urgency wake-up of a reader whose backlog is under its
    /// level (it fires once each time the backlog reaches the level).
    pub(crate) fn arm_urgent(&mut self, id: ReaderId) {
        let end = self.end;
        let Some(reader) = self.reader(id) else {
            return;
        };
        let cell = reader.cell();
        let key = cell.urgent_key.load(SeqCst);
        if cell.urgent_bound.load(SeqCst) != UNSET || key <= end {
            return;
        }
        let bound = ReaderCell::settle(
            &cell.urgent_key,
            &cell.urgent_bound,
            reader.urgent_allowance,
            end + 1,
        );
        self.urgent_order.insert((bound, id.index));
    }

    /// Arms the reader, whose cursor is `cursor`, to be woken by the next
    /// append. Returns `false` (arming nothing) if the log has moved on past
    /// the cursor already.
    pub(crate) fn arm_next(&mut self, id: ReaderId, cursor: u64) -> bool {
        if self.end > cursor {
            return false;
        }
        if let Some(reader) = self.reader(id) {
            if !reader.cell().armed.swap(true, SeqCst) {
                self.wake_next.push(id);
            }
        }
        true
    }

    /// The smallest cursor of any reader.
    pub(super) fn slowest_cursor(&self) -> u64 {
        self.readers
            .iter()
            .filter(|r| r.live)
            .map(|r| r.cell().cursor.load(SeqCst))
            .min()
            .unwrap_or(self.end)
    }

    /// Cuts every reader whose backlog has passed its limit.
    pub(super) fn cut_slow_readers(&mut self, fallout: &mut Fallout) {
        let end = self.end;
        while let Some(&(bound, index)) = self.cut_order.first() {
            if bound >= end {
                break;
            }
            self.cut_order.pop_first();
            let reader = &self.readers[index as usize];
            let cell = reader.cell();
            let key = cell.cut_key.load(SeqCst);
            if key >= end {
                // It has written since: its bound was low.
                let bound =
                    ReaderCell::settle(&cell.cut_key, &cell.cut_bound, reader.cut_allowance, end);
                self.cut_order.insert((bound, index));
                continue;
            }
            cell.cut_bound.store(UNSET, SeqCst);
            if cell.stopped.load(SeqCst) {
                fallout.abort.push(reader.outbox.clone());
            } else {
                fallout.cut.push((reader.tag, reader.outbox.clone()));
            }
            let id = ReaderId {
                index,
                generation: reader.generation,
            };
            self.detach(id);
        }
    }

    /// Wakes the readers armed for this append, and those whose backlog
    /// reached their urgent level.
    pub(super) fn collect_wakes(&mut self, fallout: &mut Fallout) {
        for id in std::mem::take(&mut self.wake_next) {
            if let Some(reader) = self.reader(id) {
                if reader.cell().armed.swap(false, SeqCst) {
                    fallout.wake.push((reader.outbox.clone(), WakeKind::Next));
                }
            }
        }
        let end = self.end;
        while let Some(&(bound, index)) = self.urgent_order.first() {
            if bound > end {
                break;
            }
            self.urgent_order.pop_first();
            let reader = &self.readers[index as usize];
            let cell = reader.cell();
            let key = cell.urgent_key.load(SeqCst);
            if key > end {
                let bound = ReaderCell::settle(
                    &cell.urgent_key,
                    &cell.urgent_bound,
                    reader.urgent_allowance,
                    end + 1,
                );
                self.urgent_order.insert((bound, index));
                continue;
            }
            cell.urgent_bound.store(UNSET, SeqCst);
            fallout.wake.push((reader.outbox.clone(), WakeKind::Urgent));
        }
    }
}

/// A bound `allowance` below `key`, but not below `floor` (a bound under the
/// end would be looked at again at once).
fn lower(key: u64, allowance: u64, floor: u64) -> u64 {
    key.saturating_sub(allowance).max(floor.min(key))
}
