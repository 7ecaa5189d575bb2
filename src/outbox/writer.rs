//! The outbox's insides: gathering what is due in order, recording what was
//! written, joining a room log, and being woken by it.

use std::sync::Arc;

use bytes::BytesMut;

use super::roomlog::{Admitted, Advance, RoomLog, WakeKind};
use super::{Attached, Outbox, OutboxState, State, WriteBatch};

impl Outbox {
    /// Fills `batch` with what is due next: private lines and log bytes,
    /// each private line once the cursor reaches the position it was
    /// accepted at. Arms the wake-up if there is nothing.
    pub(super) fn fill_locked(&self, state: &mut State, batch: &mut WriteBatch) -> OutboxState {
        batch.clear();
        let status = state.status;
        if status == OutboxState::Aborted {
            return status;
        }
        state.private.freeze();
        let State {
            private,
            reader,
            waiting,
            exempt,
            exempt_end,
            private_out,
            ..
        } = &mut *state;
        let Some(at) = reader else {
            for (_, run) in private.runs() {
                if !batch.push_private(run) {
                    break;
                }
            }
            if batch.is_empty() {
                *waiting = status == OutboxState::Open;
            } else {
                *exempt = exempt_left(*exempt, *exempt_end, *private_out, batch);
            }
            return status;
        };
        let mut log = at.log.lock();
        let Some((cursor, stop)) = log.span(at.id) else {
            // Cut by the room log; the room aborts the outbox next.
            drop(log);
            state.reader = None;
            state.private.clear();
            state.status = OutboxState::Aborted;
            return OutboxState::Aborted;
        };
        batch.reader = Some(at.id);
        let mut pos = cursor;
        let mut full = false;
        for (tag, run) in private.runs() {
            let due = (*tag).max(pos).min(stop);
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
            log.read(pos, stop, batch);
        }
        batch.seal();
        if batch.is_empty() {
            if status == OutboxState::Open {
                log.arm_next(at.id);
                *waiting = true;
            }
            return status;
        }
        let (log_bytes, private_bytes) = batch.totals();
        *exempt = exempt_left(*exempt, *exempt_end, *private_out, batch);
        log.take(at.id, log_bytes, private_bytes, *exempt as u64);
        status
    }

    /// Records that the first `written` bytes of `batch` went out.
    pub(super) fn consume_locked(&self, state: &mut State, batch: &mut WriteBatch, written: usize) {
        let (log, private) = batch.split_written(written);
        let filled_for = batch.reader;
        batch.clear();
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
            if let Some(at) = &state.reader {
                at.log.lock().advance(at.id, 0, n);
            }
            return;
        }
        state.private.consume(private as usize);
        state.private_out += private;
        let Some(at) = &state.reader else {
            return;
        };
        let advance = at.log.lock().advance(at.id, log, private);
        match advance {
            Advance::Reading => {}
            Advance::Finished => state.reader = None,
            Advance::Gone => {
                state.reader = None;
                state.private.clear();
                state.status = OutboxState::Aborted;
            }
        }
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
        let counted = state.private.len() - state.exempt;
        if counted.saturating_add(first.len()).saturating_add(then) > self.limit {
            self.abort_locked(state);
            return false;
        }
        state.private.retag(0);
        let mut core = log.lock();
        let id = core.attach(tag, self.limit, self.urgent_bytes(), Arc::downgrade(self));
        core.seed_private(id, state.private.len() as u64, state.exempt as u64);
        let wake = state.waiting && !first.is_empty();
        if !first.is_empty() {
            let Admitted::Queued { tag, .. } = core.admit_private(id, first.len(), false) else {
                unreachable!("the room for the first line was checked");
            };
            state.private.push(tag, first);
            state.private_in += first.len() as u64;
            state.waiting = false;
        } else if state.waiting {
            core.arm_next(id);
        }
        drop(core);
        state.reader = Some(Attached {
            log: log.clone(),
            id,
        });
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
        super::stop_reading(&mut state);
    }

    /// The room log has something for this outbox.
    pub(crate) fn wake_from_log(&self, kind: WakeKind) {
        let mut state = self.state.lock();
        let waiting = std::mem::replace(&mut state.waiting, false);
        drop(state);
        match kind {
            WakeKind::Next if waiting => self.notify(),
            WakeKind::Next => {}
            WakeKind::Urgent => self.notify_urgent(),
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

/// The writer holds the first bytes of the private queue (as many as the
/// batch has): an exempt reply among them no longer is, for the part it
/// holds. Returns what is left exempt.
fn exempt_left(exempt: usize, exempt_end: u64, private_out: u64, batch: &WriteBatch) -> usize {
    if exempt == 0 {
        return 0;
    }
    let (_, private) = batch.totals();
    let left = exempt_end.saturating_sub(private_out + private);
    exempt.min(usize::try_from(left).unwrap_or(usize::MAX))
}

/// If nothing is left to write, arms the wake-up, so that the next line
/// wakes the writer. The check and the arming are one step under the log's
/// lock: a line appended in between cannot be missed.
fn arm_if_idle(state: &mut State) {
    if state.status != OutboxState::Open || state.private.len() > 0 {
        return;
    }
    match &state.reader {
        None => state.waiting = true,
        Some(at) => {
            let mut log = at.log.lock();
            if log.pending(at.id) == 0 {
                log.arm_next(at.id);
                state.waiting = true;
            }
        }
    }
}
