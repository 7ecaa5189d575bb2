//! A member's bounded queue of encoded lines, and its wake-up.
//!
//! The room (and the session) only ever push into an [`Outbox`]; a writer
//! (a thread, or an event loop) takes what is queued and writes it. Pushing
//! never blocks on I/O: when a line would take the queue past its byte limit,
//! the outbox is *aborted* (everything queued is dropped and the connection
//! is to be closed at once) and the pusher is told, so that the room can
//! remove the slow member. That is the whole slow-consumer policy.
//!
//! Lines are encoded once and copied into each outbox's one contiguous
//! buffer, so that a writer sends everything pending with a single write
//! call. For chat-sized lines a copy costs less than sharing a refcounted
//! buffer across cores, and it makes writes large. A writer takes the whole
//! buffer, and the outbox holds no memory until the next line comes: an idle
//! member costs nothing here.
//!
//! # The bound
//!
//! Lines pushed with [`Outbox::push`] count against the limit. A reply the
//! member asked for and whose size the server chooses (the user list, which
//! grows with the room) is pushed with [`Outbox::push_reply`]: it does not
//! count, so that asking is never what cuts a member that reads. Only one
//! such reply is exempt at a time, until the writer takes it; one asked for
//! again before that counts like any line. An outbox therefore holds at most
//! its limit plus one reply (plus the final line of [`Outbox::close_with`]),
//! and a member that keeps asking without reading is still cut.
//!
//! # Urgency
//!
//! A writer may wait before writing a little (to write more at once). Once
//! the pending bytes reach [`Outbox::urgent_bytes`], the outbox says so
//! ([`Wake::wake_urgent`]) and the writer should write at once: a member is
//! cut only for its own slowness, never for its writer's patience.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex};

/// The default limit of pending bytes in an outbox: 1 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;

/// Pending bytes at which an outbox is urgent, for a large limit: what a
/// writer that waits to write more at once holds back at most.
pub const URGENT_BYTES: usize = 16 * 1024;

/// The capacity a fresh buffer starts with (it grows as lines come).
const INITIAL_CAPACITY: usize = 512;

/// Something to poke when an outbox has lines to write or has been closed.
///
/// It is called with the room's lock held, so it must be quick and must not
/// block: set a flag, push to a ready list, signal an event loop.
pub trait Wake: Send + Sync {
    /// The outbox went from nothing to write to something to do.
    fn wake(&self);

    /// The outbox's pending bytes just reached [`Outbox::urgent_bytes`]:
    /// write them now, even if the writer meant to wait. Called once each
    /// time they reach it (they go back under only when the writer takes
    /// them), instead of [`Wake::wake`] for that push. By default, the same
    /// as [`Wake::wake`].
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
    /// The line would have overflowed the queue: the outbox is now aborted
    /// and its member must be removed.
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

struct Queue {
    bytes: BytesMut,
    /// Bytes of a reply queued with [`Outbox::push_reply`] that do not count
    /// against the limit; zero once the writer takes them.
    exempt: usize,
    state: OutboxState,
}

/// A bounded queue of encoded lines for one connection.
pub struct Outbox {
    limit: usize,
    queue: Mutex<Queue>,
    changed: Condvar,
    waker: Option<Arc<dyn Wake>>,
}

impl Outbox {
    /// An outbox holding at most `limit` pending bytes, for a writer that
    /// blocks in [`Outbox::wait_take`].
    pub fn new(limit: usize) -> Self {
        Outbox {
            limit,
            queue: Mutex::new(Queue {
                bytes: BytesMut::new(),
                exempt: 0,
                state: OutboxState::Open,
            }),
            changed: Condvar::new(),
            waker: None,
        }
    }

    /// An outbox that also calls `waker` whenever it has something new for
    /// its writer: lines after none, or a change of state.
    pub fn with_waker(limit: usize, waker: Arc<dyn Wake>) -> Self {
        Outbox {
            waker: Some(waker),
            ..Outbox::new(limit)
        }
    }

    /// The most pending bytes this outbox holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Pending bytes at which the outbox is urgent (see [`Wake::wake_urgent`]):
    /// [`URGENT_BYTES`], or a quarter of a smaller limit.
    pub fn urgent_bytes(&self) -> usize {
        URGENT_BYTES.min(self.limit / 4).max(1)
    }

    /// Queues a line (a copy of it), or aborts the outbox if the line would
    /// overflow it.
    pub fn push(&self, line: &[u8]) -> Push {
        self.push_counted(line, false)
    }

    /// Queues a reply the member asked for and whose size the server chooses
    /// (such as the user list). It does not count against the limit, unless
    /// a reply so queued is still waiting for the writer: then it counts like
    /// any line (see [the bound](self#the-bound)).
    pub fn push_reply(&self, line: &[u8]) -> Push {
        self.push_counted(line, true)
    }

    fn push_counted(&self, line: &[u8], reply: bool) -> Push {
        let mut queue = self.queue.lock();
        if queue.state != OutboxState::Open {
            return Push::Closed;
        }
        let exempt = reply && queue.exempt == 0;
        if !exempt && queue.bytes.len() - queue.exempt + line.len() > self.limit {
            queue.bytes = BytesMut::new();
            queue.exempt = 0;
            queue.state = OutboxState::Aborted;
            drop(queue);
            self.notify();
            return Push::Overflow;
        }
        if exempt {
            queue.exempt = line.len();
        }
        let before = queue.bytes.len();
        if queue.bytes.capacity() == 0 {
            queue.bytes.reserve(line.len().max(INITIAL_CAPACITY));
        }
        queue.bytes.extend_from_slice(line);
        drop(queue);
        let urgent = self.urgent_bytes();
        if before < urgent && before + line.len() >= urgent {
            self.changed.notify_all();
            if let Some(waker) = &self.waker {
                waker.wake_urgent();
            }
        } else if before == 0 {
            self.notify();
        }
        Push::Queued
    }

    /// Stops taking lines: what is queued is still written, then the
    /// connection closes. Does nothing if already closed or aborted.
    pub fn close(&self) {
        self.close_after(&[]);
    }

    /// Queues `last` as the final line (even past the limit: it is short and
    /// there is no other way to say it), then closes as [`Outbox::close`].
    pub fn close_with(&self, last: &[u8]) {
        self.close_after(last);
    }

    fn close_after(&self, last: &[u8]) {
        let mut queue = self.queue.lock();
        if queue.state != OutboxState::Open {
            return;
        }
        queue.bytes.extend_from_slice(last);
        queue.state = OutboxState::Closing;
        drop(queue);
        self.notify();
    }

    /// Drops everything queued; the connection is to be closed at once.
    pub fn abort(&self) {
        let mut queue = self.queue.lock();
        if queue.state == OutboxState::Aborted {
            return;
        }
        queue.bytes = BytesMut::new();
        queue.exempt = 0;
        queue.state = OutboxState::Aborted;
        drop(queue);
        self.notify();
    }

    /// The outbox's state.
    pub fn state(&self) -> OutboxState {
        self.queue.lock().state
    }

    /// Whether lines are still accepted.
    pub fn is_open(&self) -> bool {
        self.state() == OutboxState::Open
    }

    /// Bytes queued and not yet taken by the writer, and the state, read
    /// together.
    pub fn status(&self) -> (usize, OutboxState) {
        let queue = self.queue.lock();
        (queue.bytes.len(), queue.state)
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn pending_bytes(&self) -> usize {
        self.queue.lock().bytes.len()
    }

    /// Takes everything queued, without blocking, with the state.
    /// `Closing` with nothing taken means: all written, close the
    /// connection.
    pub fn take(&self) -> (BytesMut, OutboxState) {
        let mut queue = self.queue.lock();
        queue.exempt = 0;
        (std::mem::take(&mut queue.bytes), queue.state)
    }

    /// Like [`Outbox::take`], but first waits (up to `timeout`, if given)
    /// while the outbox is open and empty.
    pub fn wait_take(&self, timeout: Option<Duration>) -> (BytesMut, OutboxState) {
        let mut queue = self.queue.lock();
        if queue.bytes.is_empty() && queue.state == OutboxState::Open {
            match timeout {
                Some(timeout) => {
                    self.changed.wait_for(&mut queue, timeout);
                }
                None => self.changed.wait(&mut queue),
            }
        }
        queue.exempt = 0;
        (std::mem::take(&mut queue.bytes), queue.state)
    }

    /// Takes every queued byte (for tests and tools).
    pub fn drain_bytes(&self) -> Vec<u8> {
        self.take().0.to_vec()
    }

    fn notify(&self) {
        self.changed.notify_all();
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.queue.lock();
        f.debug_struct("Outbox")
            .field("limit", &self.limit)
            .field("bytes", &queue.bytes.len())
            .field("state", &queue.state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn push_and_take_in_order() {
        let outbox = Outbox::new(100);
        assert_eq!(outbox.push(b"a\n"), Push::Queued);
        assert_eq!(outbox.push(b"b\n"), Push::Queued);
        assert_eq!(outbox.pending_bytes(), 4);
        assert_eq!(outbox.drain_bytes(), b"a\nb\n");
        assert_eq!(outbox.pending_bytes(), 0);
    }

    #[test]
    fn overflow_aborts_and_drops_everything() {
        let outbox = Outbox::new(5);
        assert_eq!(outbox.push(b"abc\n"), Push::Queued);
        assert_eq!(outbox.push(b"de\n"), Push::Overflow);
        assert_eq!(outbox.state(), OutboxState::Aborted);
        assert_eq!(outbox.drain_bytes(), b"");
        assert_eq!(outbox.push(b"x"), Push::Closed);
    }

    #[test]
    fn the_limit_counts_pending_bytes_exactly() {
        let outbox = Outbox::new(4);
        assert_eq!(outbox.push(b"abcd"), Push::Queued);
        let _ = outbox.take();
        assert_eq!(outbox.push(b"efgh"), Push::Queued);
    }

    #[test]
    fn close_keeps_what_is_queued_and_refuses_more() {
        let outbox = Outbox::new(100);
        assert_eq!(outbox.push(b"a\n"), Push::Queued);
        outbox.close_with(b"bye\n");
        outbox.close_with(b"again\n");
        assert_eq!(outbox.push(b"late\n"), Push::Closed);
        let (taken, state) = outbox.take();
        assert_eq!(state, OutboxState::Closing);
        assert_eq!(&taken[..], b"a\nbye\n");
    }

    #[test]
    fn wait_take_wakes_on_push_from_another_thread() {
        let outbox = Arc::new(Outbox::new(100));
        let pusher = Arc::clone(&outbox);
        let handle = std::thread::spawn(move || {
            let _ = pusher.push(b"hi\n");
        });
        let mut taken = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while taken.is_empty() && std::time::Instant::now() < deadline {
            taken.extend_from_slice(&outbox.wait_take(Some(Duration::from_secs(1))).0);
        }
        handle.join().expect("pusher thread");
        assert_eq!(taken, b"hi\n");
    }

    #[test]
    fn a_requested_reply_may_pass_the_limit_once_until_taken() {
        let outbox = Outbox::new(10);
        let list = [b'x'; 30];
        assert_eq!(outbox.push(b"abcd\n"), Push::Queued);
        assert_eq!(outbox.push_reply(&list), Push::Queued, "exempt");
        assert_eq!(outbox.push(b"efgh\n"), Push::Queued, "10 bytes count");
        assert_eq!(outbox.pending_bytes(), 40);
        assert_eq!(outbox.push(b"i"), Push::Overflow, "11 bytes count");
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push_reply(&list), Push::Queued);
        let _ = outbox.take();
        assert_eq!(outbox.push_reply(&list), Push::Queued, "exempt again");
        assert_eq!(
            outbox.push_reply(&list),
            Push::Overflow,
            "asked again before the first was taken"
        );
        assert_eq!(outbox.state(), OutboxState::Aborted);
    }

    #[test]
    fn the_waker_hears_again_when_pending_bytes_turn_urgent() {
        #[derive(Default)]
        struct Log(Mutex<Vec<&'static str>>);
        impl Wake for Log {
            fn wake(&self) {
                self.0.lock().push("wake");
            }
            fn wake_urgent(&self) {
                self.0.lock().push("urgent");
            }
        }
        let log = Arc::new(Log::default());
        let outbox = Outbox::with_waker(400, log.clone());
        assert_eq!(outbox.urgent_bytes(), 100);
        for (bytes, heard) in [(60, &["wake"][..]), (30, &[]), (20, &["urgent"]), (50, &[])] {
            assert_eq!(outbox.push(&vec![b'x'; bytes]), Push::Queued);
            assert_eq!(std::mem::take(&mut *log.0.lock()), heard, "{bytes}");
        }
        let _ = outbox.take();
        assert_eq!(outbox.push(&[b'x'; 150]), Push::Queued);
        assert_eq!(std::mem::take(&mut *log.0.lock()), ["urgent"]);
        assert_eq!(Outbox::new(1 << 20).urgent_bytes(), URGENT_BYTES);
    }

    #[test]
    fn waker_is_called_when_work_appears() {
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(&self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let outbox = Outbox::with_waker(100, count.clone());
        let _ = outbox.push(b"a");
        let _ = outbox.push(b"b");
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "only the first push wakes"
        );
        outbox.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
