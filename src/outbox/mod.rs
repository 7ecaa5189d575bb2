//! A member's bounded queue of lines, and its wake-up.
//!
//! The room (and the session) only ever add to an [`Outbox`]; a writer (a
//! thread, or an event loop) takes what is due and writes it. Adding never
//! blocks on I/O: when a member's backlog would pass its byte limit, the
//! outbox is *aborted* (everything queued is dropped and the connection is
//! to be closed at once), so that the room can remove the slow member. That
//! is the whole slow-consumer policy.
//!
//! # One copy of each public line
//!
//! A member of a [`ChatRoom`](crate::ChatRoom) does not get its own copy of
//! public lines. The room appends each public event (a join, public lines, a
//! leave) once to its *room log*, and each member's outbox has a cursor into
//! it. Private lines (whispers, replies, errors) go to the outbox's own
//! queue, each tagged with the log's position when it was accepted, so that
//! the writer sends everything in the order the server accepted it.
//!
//! A member's backlog is the log bytes from its cursor to the log's end plus
//! its private bytes. A member whose backlog passes its limit is cut: its
//! outbox is aborted and its cursor no longer holds the log back. So the
//! log's memory is bounded by the members' limit (plus a few chunks), not by
//! how many members there are.
//!
//! A writer gathers what is due into a [`WriteBatch`] without copying (the
//! parts refer to the log's shared chunks) and writes it with one vectored
//! write; [`Outbox::take`] makes a contiguous copy instead. An idle member's
//! outbox holds no buffer.
//!
//! # The bound
//!
//! The backlog that counts against the limit leaves out what the writer
//! holds (filled and not yet consumed: it is being written), and one reply
//! the member asked for and whose size the server chooses (the user list,
//! which grows with the room), pushed with [`Outbox::push_reply`]: asking is
//! never what cuts a member that reads. Only one such reply is exempt at a
//! time, until the writer takes it; one asked for again before that counts
//! like any line, so a member that keeps asking without reading is still
//! cut. The final line of [`Outbox::close_with`] does not count either.
//!
//! # Urgency
//!
//! A writer may wait before writing a little (to write more at once). Once
//! the counted backlog reaches [`Outbox::urgent_bytes`], the outbox says so
//! ([`Wake::wake_urgent`]) and the writer should write at once: a member is
//! cut only for its own slowness, never for its writer's patience.

mod batch;
mod private;
mod roomlog;
mod state;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex, MutexGuard};

pub use batch::{WriteBatch, DEFAULT_BATCH_BYTES, DEFAULT_BATCH_PARTS};
pub(crate) use roomlog::{Fallout, RoomLog, WakeKind};
pub use roomlog::{LogStats, DEFAULT_CHUNK_BYTES};

use private::PrivateQueue;
use state::{stop_reading, State};

/// The default limit of a member's backlog: 1 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;

/// The backlog at which an outbox is urgent, for a large limit: what a
/// writer that waits to write more at once holds back at most.
pub const URGENT_BYTES: usize = 16 * 1024;

/// Something to poke when an outbox has something new for its writer.
///
/// It may be called with the room's lock held, so it must be quick and must
/// not block: set a flag, push to a ready list, signal an event loop.
pub trait Wake: Send + Sync {
    /// The outbox went from nothing to write to something to do: a line, or
    /// a change of state.
    fn wake(&self);

    /// The outbox's counted backlog just reached [`Outbox::urgent_bytes`]:
    /// write it now, even if the writer meant to wait. Called once each time
    /// it reaches the level (it goes back under only as the writer writes),
    /// instead of [`Wake::wake`] when a line does both. By default, the
    /// same as [`Wake::wake`].
    fn wake_urgent(&self) {
        self.wake();
    }
}

/// What became of a pushed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Push {
    /// The line is queued.
    Queued,
    /// The line would have taken the backlog past the limit: the outbox is
    /// now aborted and its member must be removed.
    Overflow,
    /// The outbox is closed or aborted; the line was dropped.
    Closed,
}

/// The state of an outbox, as a writer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxState {
    /// Lines may still come.
    Open,
    /// No more lines will come: write what is queued, then close the
    /// connection.
    Closing,
    /// Close the connection now; nothing more is to be written.
    Aborted,
}

/// A member's bounded queue of lines, for one connection.
pub struct Outbox {
    limit: usize,
    state: Mutex<State>,
    changed: Condvar,
    waker: Option<Arc<dyn Wake>>,
}

impl Outbox {
    /// An outbox holding a backlog of at most `limit` bytes, for a writer
    /// that blocks in [`Outbox::wait_take`] or [`Outbox::wait_fill`].
    pub fn new(limit: usize) -> Self {
        Self::build(limit, None)
    }

    /// An outbox that also calls `waker` whenever it has something new for
    /// its writer (see [`Wake`]).
    pub fn with_waker(limit: usize, waker: Arc<dyn Wake>) -> Self {
        Self::build(limit, Some(waker))
    }

    fn build(limit: usize, waker: Option<Arc<dyn Wake>>) -> Self {
        Outbox {
            limit,
            state: Mutex::new(State {
                status: OutboxState::Open,
                private: PrivateQueue::default(),
                reader: None,
                // A new outbox's writer has found nothing: the first line
                // wakes it.
                waiting: true,
                exempt: 0,
                exempt_end: 0,
                private_in: 0,
                private_out: 0,
                taken_private: 0,
                urgent_told: false,
                last_line: None,
            }),
            changed: Condvar::new(),
            waker,
        }
    }

    /// The largest backlog this outbox holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The counted backlog at which the outbox is urgent (see
    /// [`Wake::wake_urgent`]): [`URGENT_BYTES`], or a quarter of a smaller
    /// limit.
    pub fn urgent_bytes(&self) -> usize {
        URGENT_BYTES.min(self.limit / 4).max(1)
    }

    /// Queues a private line (a copy of it), or aborts the outbox if the
    /// line would take the backlog past the limit.
    pub fn push(&self, line: &[u8]) -> Push {
        self.push_line(line, false)
    }

    /// Queues a reply the member asked for and whose size the server
    /// chooses (such as the user list). It does not count against the
    /// limit, unless a reply so queued is still waiting for the writer: then
    /// it counts like any line (see [the bound](self#the-bound)).
    pub fn push_reply(&self, line: &[u8]) -> Push {
        self.push_line(line, true)
    }

    fn push_line(&self, line: &[u8], reply: bool) -> Push {
        let mut state = self.state.lock();
        if state.status != OutboxState::Open {
            return Push::Closed;
        }
        let exempt = reply && state.exempt == 0;
        // A private line is tagged with the log's end: it comes after all
        // the room accepted before it.
        let tag = state.reader.as_ref().map_or(0, |at| at.log.end());
        let before = state.counted(tag);
        let after = before.saturating_add(line.len() as u64);
        if !exempt && after > self.limit as u64 {
            self.abort_locked(state);
            return Push::Overflow;
        }
        state.private.push(tag, line);
        state.private_in += line.len() as u64;
        if exempt {
            state.exempt = line.len();
            state.exempt_end = state.private_in;
        }
        let level = self.urgent_bytes() as u64;
        let urgent = !exempt && !state.urgent_told && before < level && after >= level;
        if urgent {
            state.urgent_told = true;
        }
        self.publish(&mut state);
        let waiting = std::mem::replace(&mut state.waiting, false);
        drop(state);
        if urgent {
            self.notify_urgent();
        } else if waiting {
            self.notify();
        }
        Push::Queued
    }

    /// Stops taking lines: what is queued (and what the room log holds for
    /// this member up to now) is still written, then the connection closes.
    /// Does nothing if already closed or aborted.
    pub fn close(&self) {
        self.close_after(&[]);
    }

    /// Queues `last` as the final line (even past the limit: it is short and
    /// there is no other way to say it), then closes as [`Outbox::close`].
    pub fn close_with(&self, last: &[u8]) {
        self.close_after(last);
    }

    fn close_after(&self, last: &[u8]) {
        let mut state = self.state.lock();
        if state.status != OutboxState::Open {
            return;
        }
        let tag = stop_reading(&mut state);
        state.private.push(tag, last);
        state.private_in += last.len() as u64;
        // The last line does not count: nothing counted comes after it.
        state.exempt += last.len();
        state.exempt_end = state.private_in;
        state.status = OutboxState::Closing;
        state.last_line = Some(last.into());
        self.publish(&mut state);
        drop(state);
        self.notify();
    }

    /// Wakes the writer (its [`Wake`], or a thread waiting to fill or take)
    /// although nothing new was queued: for a driver that has more to do
    /// than write, such as a session whose room has answered its name
    /// claim (see [`JoinTicket`](crate::room::JoinTicket)).
    pub fn nudge(&self) {
        self.notify();
    }

    /// Drops everything queued; the connection is to be closed at once.
    pub fn abort(&self) {
        let state = self.state.lock();
        if state.status != OutboxState::Aborted {
            self.abort_locked(state);
        }
    }

    fn abort_locked(&self, mut state: MutexGuard<'_, State>) {
        if let Some(at) = state.reader.take() {
            at.log.lock().detach(at.id);
        }
        state.private.clear();
        state.exempt = 0;
        state.taken_private = 0;
        state.status = OutboxState::Aborted;
        state.waiting = false;
        drop(state);
        self.notify();
    }

    /// The final line it was closed with ([`Outbox::close_with`]; empty
    /// after [`Outbox::close`]), once closed. A driver tells by it why the
    /// connection ends (a WebSocket close code, say).
    pub fn last_line(&self) -> Option<Box<[u8]>> {
        self.state.lock().last_line.clone()
    }

    /// The outbox's state.
    pub fn state(&self) -> OutboxState {
        self.state.lock().status
    }

    /// Whether lines are still accepted.
    pub fn is_open(&self) -> bool {
        self.state() == OutboxState::Open
    }

    /// The backlog (bytes not yet written) and the state, read together.
    pub fn status(&self) -> (usize, OutboxState) {
        let state = self.state.lock();
        (state.pending(), state.status)
    }

    /// The backlog: bytes due to this member and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.state.lock().pending()
    }

    /// Fills `batch` (emptied first) with what is due next, in order, within
    /// the batch's limits, and returns the state. An empty batch with
    /// `Open` means nothing to write: the writer is woken when something
    /// comes. An empty batch with `Closing` means all is written.
    pub fn fill(&self, batch: &mut WriteBatch) -> OutboxState {
        let mut state = self.state.lock();
        self.fill_locked(&mut state, batch)
    }

    /// Like [`Outbox::fill`], but first waits (up to `timeout`, if given)
    /// while the outbox is open and has nothing to write.
    pub fn wait_fill(&self, batch: &mut WriteBatch, timeout: Option<Duration>) -> OutboxState {
        let mut state = self.state.lock();
        let status = self.fill_locked(&mut state, batch);
        if !batch.is_empty() || status != OutboxState::Open {
            return status;
        }
        match timeout {
            Some(timeout) => {
                self.changed.wait_for(&mut state, timeout);
            }
            None => self.changed.wait(&mut state),
        }
        self.fill_locked(&mut state, batch)
    }

    /// Records that the first `written` bytes of `batch` (as filled from
    /// this outbox) went out, and empties the batch.
    pub fn consume(&self, batch: &mut WriteBatch, written: usize) {
        let mut state = self.state.lock();
        self.consume_locked(&mut state, batch, written);
    }

    /// Takes (a copy of) everything due, without blocking, with the state.
    /// `Closing` with nothing taken means: all written, close the
    /// connection.
    pub fn take(&self) -> (BytesMut, OutboxState) {
        let mut state = self.state.lock();
        self.take_locked(&mut state)
    }

    /// Like [`Outbox::take`], but first waits (up to `timeout`, if given)
    /// while the outbox is open and has nothing to write.
    pub fn wait_take(&self, timeout: Option<Duration>) -> (BytesMut, OutboxState) {
        let mut state = self.state.lock();
        let (bytes, status) = self.take_locked(&mut state);
        if !bytes.is_empty() || status != OutboxState::Open {
            return (bytes, status);
        }
        match timeout {
            Some(timeout) => {
                self.changed.wait_for(&mut state, timeout);
            }
            None => self.changed.wait(&mut state),
        }
        self.take_locked(&mut state)
    }

    /// Takes every byte due (for tests and tools).
    pub fn drain_bytes(&self) -> Vec<u8> {
        self.take().0.to_vec()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(at) = self.state.get_mut().reader.take() {
            at.log.lock().detach(at.id);
        }
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Outbox")
            .field("limit", &self.limit)
            .field("pending", &state.pending())
            .field("state", &state.status)
            .field("in_room_log", &state.reader.is_some())
            .finish()
    }
}
