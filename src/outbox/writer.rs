//! The outbox's insides: gathering what is due in order, recording what was
//! written, keeping the room log told of its keys, joining a room log, and
//! being woken by it.
//!
//! The log's lock is taken only to read log bytes, to arm a wake-up, to
//! re-key when a key fell below its bound, and to join or leave: a member
//! that only gets private lines never takes it.

use std::sync::atomic::{fence, Ordering::Release, Ordering::SeqCst};
use std::sync::Arc;

use bytes::BytesMut;

use super::roomlog::{ReaderCell, RoomLog, WakeKind, UNSET};
use super::state::{stop_reading, Attached, State};
use super::{Outbox, OutboxState, WriteBatch};

impl Outbox {
    /// Fills `batch` with what is due next: private lines and log bytes,
    /// each private line once the cursor reaches the position it was
    /// accepted at. Arms the wake-up if there is nothing.
    pub(super) fn fill_locked(&self, state: &mut State, batch: &mut WriteBatch) -> OutboxState {
        loop {
            batch.clear();
            let status = state.status;
            if status == OutboxState::Aborted {
                return status;
            }
            let State {
                private,
                reader,
                waiting,
                exempt,
                exempt_end,
                private_out,
                taken_private,
                ..
            } = &mut *state;
            let mut taken_log = 0;
            match reader {
                None => {
                    for (_, run) in private.runs() {
                        if !batch.push_private(run) {
                            break;
                        }
                    }
                }
                Some(at) => {
                    let stop = at.stop.min(at.log.end());
                    let mut pos = at.cursor;
                    if pos < stop {
                        let mut log = at.log.lock();
                        if !log.is_reading(at.id) {
                            drop(log);
                            self.mark_cut(state);
                            return OutboxState::Aborted;
                        }
                        batch.reader = Some(at.id);
                        let mut full = false;
                        for (tag, run) in private.runs() {
                            let due = tag.max(pos).min(stop);
                            if due > pos {
                                pos = log.read(pos, due, batch);
                                if pos < due {
                                    full = true;
                                    break;
                                }
                            }
                            if !batch.push_private(run) {
                                full = true;
                                break;
                            }
                        }
                        if !full {
                            pos = log.read(pos, stop, batch);
                        }
                        taken_log = pos - at.cursor;
                    } else {
                        // Nothing due from the log: every private line is.
                        batch.reader = Some(at.id);
                        for (_, run) in private.runs() {
                            if !batch.push_private(run) {
                                break;
                            }
                        }
                    }
                }
            }
            batch.seal();
            if batch.is_empty() {
                if status != OutboxState::Open {
                    return status;
                }
                let unarmed = reader
                    .as_ref()
                    .filter(|at| at.stop == u64::MAX && !at.cell.armed.load(SeqCst));
                if let Some(at) = unarmed {
                    if !at.log.lock().arm_next(at.id, at.cursor) {
                        // The log moved on meanwhile: read again.
                        continue;
                    }
                }
                *waiting = true;
                return status;
            }
            let (_, private_bytes) = batch.totals();
            *exempt = exempt_left(*exempt, *exempt_end, *private_out, private_bytes);
            *taken_private = private_bytes as usize;
            if let Some(at) = reader {
                at.taken = taken_log;
            }
            self.publish(state);
            return status;
        }
    }

    /// The room log cut this outbox: it is aborted (the room removes its
    /// member and tells the others).
    fn mark_cut(&self, state: &mut State) {
        state.reader = None;
        state.private.clear();
        state.exempt = 0;
        state.taken_private = 0;
        state.status = OutboxState::Aborted;
    }

    /// Records that the first `written` bytes of `batch` went out.
    pub(super) fn consume_locked(&self, state: &mut State, batch: &mut WriteBatch, written: usize) {
        let (log, private) = batch.split_written(written);
        let filled_for = batch.reader;
        batch.clear();
        state.taken_private = 0;
        if state.status == OutboxState::Aborted {
            return;
        }
        let same = matches!((&state.reader, filled_for), (Some(at), Some(id)) if at.id == id);
        if !same {
            // The batch held only private lines, or the outbox has joined
            // again since (its unwritten log bytes then went to the front of
            // its private queue): either way, what went out was there.
            let n = log + private;
            state.private.consume(n as usize);
            state.private_out += n;
            if let Some(at) = &mut state.reader {
                at.taken = 0;
            }
            self.publish(state);
            return;
        }
        state.private.consume(private as usize);
        state.private_out += private;
        let Some(at) = &mut state.reader else {
            return;
        };
        at.cursor += log;
        at.taken = 0;
        at.cell.cursor.store(at.cursor, SeqCst);
        if at.cursor >= at.stop {
            // It has read all it will ever read from the log.
            if let Some(at) = state.reader.take() {
                at.log.lock().detach(at.id);
            }
            return;
        }
        self.publish(state);
    }

    /// Copies out and consumes everything due. If that is all there was,
    /// the next line wakes the writer.
    pub(super) fn take_locked(&self, state: &mut State) -> (BytesMut, OutboxState) {
        let mut batch = WriteBatch::unbounded();
        let status = self.fill_locked(state, &mut batch);
        let mut bytes = BytesMut::with_capacity(batch.len());
        for part in batch.parts() {
            bytes.extend_from_slice(part);
        }
        let n = batch.len();
        if n > 0 {
            self.consume_locked(state, &mut batch, n);
            arm_if_idle(state);
        }
        (bytes, status)
    }

    /// Publishes the outbox's keys to the room log, and re-keys (under the
    /// log's lock) only if a key fell below the bound the log keeps, or the
    /// urgent level is to be armed again.
    pub(super) fn publish(&self, state: &mut State) {
        let counted_private = state.counted_private() as u64;
        let level = self.urgent_bytes() as u64;
        let Some(at) = &mut state.reader else {
            if counted_private < level {
                state.urgent_told = false;
            }
            return;
        };
        let held = at.cursor + at.taken;
        let cut = held
            .saturating_add(self.limit as u64)
            .saturating_sub(counted_private);
        let urgent = held.saturating_add(level).saturating_sub(counted_private);
        let cell = &at.cell;
        // A key that went up needs no more than a plain store: the log's
        // bound stays under it. One that fell below the key of the last
        // check is stored, then (after a fence) the bounds are read: the
        // outbox's half of the store-then-load pair (see the room log's
        // readers). Every fall is checked: the log may have put a bound
        // right under a key (at its end, when the end came within the
        // allowance of the key), so even a short private line can take
        // the key under the bound.
        cell.cut_key.store(cut, Release);
        cell.urgent_key.store(urgent, Release);
        let check = cut < at.fence_ref;
        at.fence_ref = if check { cut } else { at.fence_ref.max(cut) };
        if check {
            fence(SeqCst);
        }
        let end = at.log.end();
        if urgent > end {
            state.urgent_told = false;
        }
        let urgent_bound = cell.urgent_bound.load(SeqCst);
        let rearm = urgent_bound == UNSET && urgent > end && at.stop == u64::MAX;
        let rekey = check && {
            let cut_bound = cell.cut_bound.load(SeqCst);
            (cut_bound != UNSET && cut < cut_bound)
                || (urgent_bound != UNSET && urgent < urgent_bound)
        };
        if rekey || rearm {
            let mut log = at.log.lock();
            log.rekey(at.id);
            if rearm {
                log.arm_urgent(at.id);
            }
        }
    }

    /// Joins `log` as reader `tag`, all or nothing: queues `first` (the
    /// welcome) and makes room for `then` bytes of the log (the join line)
    /// if the outbox can take both; otherwise aborts it (if open) and
    /// returns `false`. From then on the outbox reads everything appended
    /// to the log. Lines it still had to write (private ones, and the log
    /// bytes of an earlier membership) come first.
    pub(crate) fn attach(
        self: &Arc<Self>,
        log: &Arc<RoomLog>,
        tag: u64,
        first: &[u8],
        then: usize,
    ) -> bool {
        let mut state = self.state.lock();
        if state.status != OutboxState::Open {
            return false;
        }
        if state.reader.is_some() {
            // Still reading a log (the same room or another): what it has
            // yet to write from there becomes private, due at once.
            let waiting = state.waiting;
            let (earlier, _) = self.take_locked(&mut state);
            state.waiting = waiting;
            if let Some(at) = state.reader.take() {
                at.log.lock().detach(at.id);
            }
            state.private.clear();
            state.private.push(0, &earlier);
            state.private_in += earlier.len() as u64;
            state.exempt = 0;
        }
        let counted = state.counted_private();
        if counted.saturating_add(first.len()).saturating_add(then) > self.limit {
            self.abort_locked(state);
            return false;
        }
        state.private.retag(0);
        let mut core = log.lock();
        let end = core.end();
        state.private.push(end, first);
        state.private_in += first.len() as u64;
        let cell = Arc::new(ReaderCell::new(end, u64::MAX, u64::MAX));
        state.reader = Some(Attached {
            log: log.clone(),
            id: core.attach(
                tag,
                self.limit,
                self.urgent_bytes(),
                Arc::downgrade(self),
                cell.clone(),
            ),
            cell,
            cursor: end,
            stop: u64::MAX,
            taken: 0,
            fence_ref: u64::MAX,
        });
        if let Some(at) = &state.reader {
            if state.waiting && first.is_empty() && !core.arm_next(at.id, end) {
                unreachable!("the log cannot move on under its lock");
            }
        }
        drop(core);
        self.publish(&mut state);
        let wake = state.waiting && !first.is_empty();
        if wake {
            state.waiting = false;
        }
        drop(state);
        if wake {
            self.notify();
        }
        true
    }

    /// Reads no more of the room log than it holds now (the member left);
    /// lines pushed later come after all of it.
    pub(crate) fn leave_log(&self) {
        let mut state = self.state.lock();
        stop_reading(&mut state);
    }

    /// The room log has something for this outbox.
    pub(crate) fn wake_from_log(&self, kind: WakeKind) {
        let mut state = self.state.lock();
        match kind {
            WakeKind::Next => {
                if !std::mem::replace(&mut state.waiting, false) {
                    return;
                }
                drop(state);
                self.notify();
            }
            WakeKind::Urgent => {
                if std::mem::replace(&mut state.urgent_told, true) {
                    return;
                }
                state.waiting = false;
                drop(state);
                self.notify_urgent();
            }
        }
    }

    /// Tells the writer something changed.
    pub(super) fn notify(&self) {
        self.changed.notify_all();
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }

    /// Tells the writer its backlog reached the urgent level.
    pub(super) fn notify_urgent(&self) {
        self.changed.notify_all();
        if let Some(waker) = &self.waker {
            waker.wake_urgent();
        }
    }
}

/// The writer holds the first `held` bytes of the private queue: an exempt
/// reply among them no longer is, for the part it holds. Returns what is
/// left exempt.
fn exempt_left(exempt: usize, exempt_end: u64, private_out: u64, held: u64) -> usize {
    if exempt == 0 {
        return 0;
    }
    let left = exempt_end.saturating_sub(private_out + held);
    exempt.min(usize::try_from(left).unwrap_or(usize::MAX))
}

/// If nothing is left to write, arms the wake-up, so that the next line
/// wakes the writer. The log's end is checked again under its lock: a line
/// appended in between cannot be missed.
fn arm_if_idle(state: &mut State) {
    if state.status != OutboxState::Open || state.private.len() > 0 {
        return;
    }
    match &state.reader {
        None => state.waiting = true,
        Some(at) if at.stop != u64::MAX => state.waiting = true,
        Some(at) => {
            let armed = at.cell.armed.load(SeqCst) && at.log.end() == at.cursor;
            if armed || at.log.lock().arm_next(at.id, at.cursor) {
                state.waiting = true;
            }
        }
    }
}
