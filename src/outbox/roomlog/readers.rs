//! The log's readers: cursors, backlogs, the cut and urgency rules, and
//! wake-ups.
//!
//! A reader's *counted* backlog is what counts toward its limit: the log
//! bytes from its cursor to the end plus its private bytes, less what its
//! writer holds (filled and not yet consumed: it is being written) and less
//! one exempt reply (see [`Outbox::push_reply`](crate::Outbox::push_reply)).
//! A reader is cut once its counted backlog passes its limit, and told once
//! it reaches its urgent level.
//!
//! Checking every reader on every append would cost as much as copying the
//! line to each. Instead each reader sits in an ordered set under a *key*:
//! the log end at which its backlog would pass the limit (or reach the
//! level). An append looks only at the readers whose key it passed. Keys go
//! stale as readers write (a true key only grows then), so a set holds a
//! lower bound that is put right when the end reaches it; whatever lowers a
//! true key (a private line, an unwritten batch) updates the set at once.

use std::sync::Weak;

use super::{Fallout, LogCore, WakeKind};
use crate::outbox::Outbox;

/// Identifies a reader of the log: a slot and the slot's generation, so
/// that a freed and reused slot is never taken for its former reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReaderId {
    index: u32,
    generation: u32,
}

/// Not armed for urgency.
const UNARMED: u64 = u64::MAX;

pub(super) struct Reader {
    generation: u32,
    live: bool,
    /// The log position of the next byte to write.
    pub(super) cursor: u64,
    /// Where the reader stops reading (it left the room, or its outbox is
    /// closing); `u64::MAX` while it reads on.
    stop: u64,
    limit: u64,
    urgent: u64,
    /// Counted private bytes queued (the last line of a closing outbox is
    /// not counted).
    private: u64,
    /// Private bytes of one reply that do not count.
    exempt: u64,
    /// Log and private bytes the writer holds.
    taken_log: u64,
    taken_private: u64,
    /// The room's name for the reader (its member id).
    tag: u64,
    outbox: Weak<Outbox>,
    /// The key it sits under in `cut_order` (at most its true key).
    cut_key: u64,
    /// The key it sits under in `urgent_order`, or [`UNARMED`].
    urgent_key: u64,
    /// Armed to be woken by the next append.
    wake_next: bool,
}

impl Reader {
    fn vacant() -> Self {
        Reader {
            generation: 0,
            live: false,
            cursor: 0,
            stop: 0,
            limit: 0,
            urgent: 0,
            private: 0,
            exempt: 0,
            taken_log: 0,
            taken_private: 0,
            tag: 0,
            outbox: Weak::new(),
            cut_key: 0,
            urgent_key: UNARMED,
            wake_next: false,
        }
    }

    /// Counted private bytes.
    fn counted_private(&self) -> u64 {
        self.private
            .saturating_sub(self.taken_private + self.exempt)
    }

    /// The counted backlog for a log ending at `end`.
    fn counted(&self, end: u64) -> u64 {
        end.saturating_sub(self.cursor + self.taken_log) + self.counted_private()
    }

    /// The log end at which the counted backlog is `level`.
    fn key(&self, level: u64) -> u64 {
        (self.cursor + self.taken_log)
            .saturating_add(level)
            .saturating_sub(self.counted_private())
    }
}

/// What became of a private line offered to a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// It would pass the limit: the reader is detached.
    Refused,
    /// It is counted; `tag` is the log's end, and `urgent` says whether the
    /// counted backlog just reached the urgent level.
    Queued { tag: u64, urgent: bool },
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

impl LogCore {
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
    pub(crate) fn attach(
        &mut self,
        tag: u64,
        limit: usize,
        urgent: usize,
        outbox: Weak<Outbox>,
    ) -> ReaderId {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        self.max_limit = self.max_limit.max(limit);
        let index = self.free.pop().unwrap_or_else(|| {
            self.readers.push(Reader::vacant());
            u32::try_from(self.readers.len() - 1).expect("fewer than 2^32 readers")
        });
        let end = self.end;
        let reader = &mut self.readers[index as usize];
        let generation = reader.generation.wrapping_add(1);
        *reader = Reader {
            generation,
            live: true,
            cursor: end,
            stop: u64::MAX,
            limit,
            urgent: urgent as u64,
            tag,
            outbox,
            ..Reader::vacant()
        };
        reader.cut_key = reader.key(limit);
        self.cut_order.insert((reader.cut_key, index));
        self.live += 1;
        let id = ReaderId { index, generation };
        self.arm_urgent(id);
        id
    }

    /// Removes a reader (its outbox was aborted, dropped, or has written
    /// everything up to its stop).
    pub(crate) fn detach(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        reader.live = false;
        reader.outbox = Weak::new();
        let (cut, urgent) = (reader.cut_key, reader.urgent_key);
        self.cut_order.remove(&(cut, id.index));
        if urgent != UNARMED {
            self.urgent_order.remove(&(urgent, id.index));
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

    /// Records the private bytes a reader has queued as it attaches:
    /// `private` in all, `exempt` of them not counted.
    pub(crate) fn seed_private(&mut self, id: ReaderId, private: u64, exempt: u64) {
        if let Some(reader) = self.reader_mut(id) {
            reader.private = private;
            reader.exempt = exempt.min(private);
            self.rekey(id);
        }
    }

    /// Offers a private line of `len` bytes: counted (unless `exempt`)
    /// against the limit, and tagged with the log's end.
    pub(crate) fn admit_private(&mut self, id: ReaderId, len: usize, exempt: bool) -> Admitted {
        let end = self.end;
        let len = len as u64;
        let Some(reader) = self.reader_mut(id) else {
            return Admitted::Refused;
        };
        let before = reader.counted(end);
        if exempt {
            reader.private += len;
            reader.exempt += len;
            return Admitted::Queued {
                tag: end,
                urgent: false,
            };
        }
        if before.saturating_add(len) > reader.limit {
            self.detach(id);
            return Admitted::Refused;
        }
        reader.private += len;
        let urgent = reader.urgent_key != UNARMED && before + len >= reader.urgent;
        if urgent {
            let key = std::mem::replace(&mut reader.urgent_key, UNARMED);
            self.urgent_order.remove(&(key, id.index));
        }
        self.rekey(id);
        Admitted::Queued { tag: end, urgent }
    }

    /// Records that the writer holds `log` bytes of the log (from the
    /// cursor) and `private` bytes of the private queue, and that `exempt`
    /// bytes of an exempt reply are not among them.
    pub(crate) fn take(&mut self, id: ReaderId, log: u64, private: u64, exempt: u64) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        reader.taken_log = log;
        reader.taken_private = private.min(reader.private);
        reader.exempt = exempt.min(reader.private - reader.taken_private);
        self.rekey(id);
        self.arm_urgent(id);
    }

    /// Records that the reader wrote `log` bytes of the log and `private`
    /// bytes of its private queue; what else its writer held counts again.
    pub(crate) fn advance(&mut self, id: ReaderId, log: u64, private: u64) -> Advance {
        let end = self.end;
        let Some(reader) = self.reader_mut(id) else {
            return Advance::Gone;
        };
        reader.cursor += log;
        reader.private = reader.private.saturating_sub(private);
        reader.exempt = reader.exempt.min(reader.private);
        reader.taken_log = 0;
        reader.taken_private = 0;
        debug_assert!(reader.cursor <= reader.stop.min(end));
        if reader.cursor >= reader.stop {
            self.detach(id);
            return Advance::Finished;
        }
        self.rekey(id);
        self.arm_urgent(id);
        Advance::Reading
    }

    /// Arms the reader to be woken by the next append. Does nothing if it
    /// is armed already, or reads nothing new.
    pub(crate) fn arm_next(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        if !reader.wake_next && reader.stop == u64::MAX {
            reader.wake_next = true;
            self.wake_next.push(id);
        }
    }

    /// Puts the reader under its true keys where they are lower than those
    /// it sits under (higher ones are put right lazily).
    fn rekey(&mut self, id: ReaderId) {
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        let cut = reader.key(reader.limit);
        let urgent = reader.key(reader.urgent);
        let old_cut = reader.cut_key;
        let old_urgent = reader.urgent_key;
        if cut < old_cut {
            reader.cut_key = cut;
            self.cut_order.remove(&(old_cut, id.index));
            self.cut_order.insert((cut, id.index));
        }
        if old_urgent != UNARMED && urgent < old_urgent {
            let reader = &mut self.readers[id.index as usize];
            reader.urgent_key = urgent;
            self.urgent_order.remove(&(old_urgent, id.index));
            self.urgent_order.insert((urgent, id.index));
        }
    }

    /// Arms the urgency wake-up of a reader whose counted backlog is under
    /// its level (it fires once each time the backlog reaches the level).
    fn arm_urgent(&mut self, id: ReaderId) {
        let end = self.end;
        let Some(reader) = self.reader_mut(id) else {
            return;
        };
        if reader.urgent_key != UNARMED
            || reader.stop != u64::MAX
            || reader.counted(end) >= reader.urgent
        {
            return;
        }
        let key = reader.key(reader.urgent);
        reader.urgent_key = key;
        self.urgent_order.insert((key, id.index));
    }

    /// The smallest cursor of any reader.
    pub(super) fn slowest_cursor(&self) -> u64 {
        self.readers
            .iter()
            .filter(|r| r.live)
            .map(|r| r.cursor)
            .min()
            .unwrap_or(self.end)
    }

    /// Cuts every reader whose backlog has passed its limit.
    pub(super) fn cut_slow_readers(&mut self, fallout: &mut Fallout) {
        while let Some(&(key, index)) = self.cut_order.first() {
            if key >= self.end {
                break;
            }
            let reader = &mut self.readers[index as usize];
            let true_key = reader.key(reader.limit);
            if true_key >= self.end {
                // Stale: it has written since.
                self.cut_order.pop_first();
                reader.cut_key = true_key;
                self.cut_order.insert((true_key, index));
                continue;
            }
            if reader.stop == u64::MAX {
                fallout.cut.push((reader.tag, reader.outbox.clone()));
            } else {
                fallout.abort.push(reader.outbox.clone());
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
            if let Some(reader) = self.reader_mut(id) {
                if reader.wake_next {
                    reader.wake_next = false;
                    fallout.wake.push((reader.outbox.clone(), WakeKind::Next));
                }
            }
        }
        while let Some(&(key, index)) = self.urgent_order.first() {
            if key > self.end {
                break;
            }
            self.urgent_order.pop_first();
            let reader = &mut self.readers[index as usize];
            let true_key = reader.key(reader.urgent);
            if true_key > self.end {
                reader.urgent_key = true_key;
                self.urgent_order.insert((true_key, index));
                continue;
            }
            reader.urgent_key = UNARMED;
            fallout.wake.push((reader.outbox.clone(), WakeKind::Urgent));
        }
    }
}
