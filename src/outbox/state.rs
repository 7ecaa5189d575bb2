//! An outbox's state: its private lines, its place and accounts in a room
//! log, and what its writer holds.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use super::private::PrivateQueue;
use super::roomlog::{ReaderCell, ReaderId, RoomLog};
use super::OutboxState;

/// The outbox's place in a room log, and its accounts there (kept here,
/// under the outbox's lock; the log sees them through the shared cell).
pub(super) struct Attached {
    pub(super) log: Arc<RoomLog>,
    pub(super) id: ReaderId,
    pub(super) cell: Arc<ReaderCell>,
    /// The log position of the next byte to write.
    pub(super) cursor: u64,
    /// Where it stops reading the log; `u64::MAX` while it reads on.
    pub(super) stop: u64,
    /// Log bytes the writer holds (filled, not yet consumed).
    pub(super) taken: u64,
    /// The highest cut key published since the outbox last fenced and read
    /// its bounds: a key that falls less than the log's allowance below it
    /// cannot fall below a bound.
    pub(super) fence_ref: u64,
}

pub(super) struct State {
    pub(super) status: OutboxState,
    pub(super) private: PrivateQueue,
    pub(super) reader: Option<Attached>,
    /// The writer found nothing to write: the next line wakes it.
    pub(super) waiting: bool,
    /// Bytes of a reply queued with [`Outbox::push_reply`] that do not
    /// count, and where in the private stream it ends.
    pub(super) exempt: usize,
    pub(super) exempt_end: u64,
    /// Private bytes ever queued and ever written: positions in the
    /// private stream.
    pub(super) private_in: u64,
    pub(super) private_out: u64,
    /// Private bytes the writer holds.
    pub(super) taken_private: usize,
    /// The writer was told the backlog is urgent, and it has not gone back
    /// under the level since.
    pub(super) urgent_told: bool,
    /// The final line given to [`Outbox::close_with`](super::Outbox::close_with), once closed.
    pub(super) last_line: Option<Box<[u8]>>,
}

impl State {
    /// Private bytes that count toward the limit.
    pub(super) fn counted_private(&self) -> usize {
        self.private
            .len()
            .saturating_sub(self.taken_private + self.exempt)
    }

    /// The backlog that counts toward the limit, for a log ending at `end`:
    /// log bytes from the cursor to the end (whether or not it still reads
    /// them: its cursor holds the log back) and private bytes, less what
    /// the writer holds and an exempt reply.
    pub(super) fn counted(&self, end: u64) -> u64 {
        let log = self
            .reader
            .as_ref()
            .map_or(0, |at| end.saturating_sub(at.cursor + at.taken));
        log + self.counted_private() as u64
    }

    /// Bytes due and not yet written.
    pub(super) fn pending(&self) -> usize {
        let log = self
            .reader
            .as_ref()
            .map_or(0, |at| at.stop.min(at.log.end()).saturating_sub(at.cursor));
        self.private.len() + usize::try_from(log).unwrap_or(usize::MAX)
    }
}

/// Makes the outbox read no more of the log than it has now; returns the
/// tag for a private line that comes after all of it.
pub(super) fn stop_reading(state: &mut State) -> u64 {
    let Some(at) = &mut state.reader else {
        return 0;
    };
    let end = at.log.end();
    at.stop = at.stop.min(end);
    at.cell.stopped.store(true, SeqCst);
    if at.cursor >= at.stop {
        if let Some(at) = state.reader.take() {
            at.log.lock().detach(at.id);
        }
    }
    end
}
