//! The outbox's insides: gathering what is due in order, recording what was
//! written, joining a room log, and being woken by it.

use std::sync::Arc;

use bytes::BytesMut;

use super::roomlog::{Advance, RoomLog, WakeKind};
use super::{Attached, Outbox, OutboxState, State, WriteBatch};

impl Outbox {
    /// Fills `batch` with what is due next: private lines and log bytes,
    /// each private line once the cursor reaches the position it was
    /// accepted at. Arms the wake-up if there is nothing.
    pub(super) fn fill_locked(&self, state: &mut State, batch: &mut WriteBatch) -> OutboxState {
        batch.clear();
        if state.status == OutboxState::Aborted {
            return OutboxState::Aborted;
        }
        state.private.freeze();
        let status = state.status;
        let State {
            private, reader, ..
        } = &mut *state;
        match reader {
            None => {
                for (_, run) in private.runs() {
                    if !batch.push_private(run) {
                        break;
                    }
                }
            }
            Some(at) => {
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
                if batch.is_empty() {
                    if status == OutboxState::Open {
                        log.arm_next(at.id);
                    }
                } else {
                    let (log_bytes, private_bytes) = batch.totals();
                    log.take(at.id, log_bytes, private_bytes);
                }
            }
        }
        if batch.is_empty() && state.status == OutboxState::Open {
            state.waiting = true;
        }
        state.status
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
            if let Some(at) = &state.reader {
                at.log.lock().advance(at.id, 0, n);
            }
            return;
        }
        state.private.consume(private as usize);
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

    /// Joins `log` as reader `tag`: the outbox reads everything appended
    /// from now on. Lines it still had to write (private ones, and the log
    /// bytes of an earlier membership) come first. Does nothing unless the
    /// outbox is open.
    pub(crate) fn attach(self: &Arc<Self>, log: &Arc<RoomLog>, tag: u64) {
        let mut state = self.state.lock();
        if state.status != OutboxState::Open {
            return;
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
        }
        state.private.retag(0);
        let mut core = log.lock();
        let id = core.attach(tag, self.limit, Arc::downgrade(self));
        if state.private.len() > 0 {
            core.admit_private(id, state.private.len(), true);
        }
        if state.waiting {
            core.arm_next(id);
        }
        if state.level != usize::MAX {
            let level = state.level;
            core.arm_level(id, level);
        }
        drop(core);
        state.reader = Some(Attached {
            log: log.clone(),
            id,
        });
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
        match kind {
            WakeKind::Next if state.waiting => state.waiting = false,
            WakeKind::Level if state.level != usize::MAX => state.level = usize::MAX,
            _ => return,
        }
        drop(state);
        self.notify();
    }

    /// Tells the writer something changed.
    pub(super) fn notify(&self) {
        self.changed.notify_all();
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }
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
