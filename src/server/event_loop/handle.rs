//! What an event loop shares with the threads that feed and wake it: the
//! accept thread hands it connections, outboxes wake it, the server stops
//! it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mio::net::TcpStream as MioStream;
use mio::{Poll, Token, Waker};
use parking_lot::Mutex;

use crate::outbox::Wake;
use crate::room::Room;
use crate::server::config::ServerConfig;
use crate::server::connections::Connections;
use crate::server::listener::LayerFactory;

use super::EventLoop;

/// The token of each loop's waker.
pub(super) const WAKE: Token = Token(usize::MAX);

/// A connection the accept thread took, on its way to a loop: the socket,
/// and what makes its layers (`None`: plain lines). The layers are made on
/// the loop, so that nothing of a handshake runs on the accept thread.
pub(crate) struct Accepted {
    pub(crate) stream: MioStream,
    pub(crate) layers: Option<LayerFactory>,
}

/// What a loop shares with the threads that wake it.
pub(super) struct Shared {
    pub(super) waker: Waker,
    /// Connections accepted for this loop, not yet registered.
    pub(super) incoming: Mutex<Vec<Accepted>>,
    /// Tokens of connections whose outbox has something new.
    pub(super) ready: Mutex<Vec<usize>>,
    /// The waker was signalled this turn already.
    pub(super) notified: AtomicBool,
    /// The loop should exit.
    pub(super) stop: AtomicBool,
    /// The loop has exited (asked to, or because epoll failed).
    pub(super) exited: AtomicBool,
    /// Signalled when the loop exits, so the accept thread can tell.
    pub(super) on_exit: Option<Arc<Waker>>,
}

impl Shared {
    pub(super) fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(error) = self.waker.wake() {
                log::error!("cannot wake an event loop: {error}");
            }
        }
    }
}

/// Wakes a connection's loop when its outbox has something new, or has
/// become urgent (the loop tells them apart by the outbox's pending bytes,
/// so both wakes are the same cheap push).
pub(super) struct ConnWaker {
    pub(super) shared: Arc<Shared>,
    pub(super) token: usize,
}

impl Wake for ConnWaker {
    fn wake(&self) {
        self.shared.ready.lock().push(self.token);
        self.shared.notify();
    }
}

/// A running event loop, as the accept thread sees it.
pub(crate) struct LoopHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LoopHandle {
    /// Starts a loop on its own thread.
    pub(crate) fn spawn(
        index: usize,
        room: Room,
        config: ServerConfig,
        connections: Arc<Connections>,
        on_exit: Option<Arc<Waker>>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let shared = Arc::new(Shared {
            waker,
            incoming: Mutex::new(Vec::new()),
            ready: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            on_exit,
        });
        let event_loop = EventLoop::new(poll, shared.clone(), room, config, connections);
        let thread = thread::Builder::new()
            .name(format!("chat-loop-{index}"))
            .spawn(move || event_loop.run())?;
        Ok(LoopHandle {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether the loop still runs.
    pub(crate) fn is_running(&self) -> bool {
        !self.shared.exited.load(Ordering::SeqCst)
    }

    /// Hands accepted (non-blocking) connections to the loop, emptying
    /// `accepted`: one lock and at most one wake-up for the batch. Returns
    /// false if the loop has exited, and then the connections are closed.
    pub(crate) fn hand_over(&self, accepted: &mut Vec<Accepted>) -> bool {
        self.shared.incoming.lock().append(accepted);
        self.shared.notify();
        // The loop sets `exited` before it empties `incoming` a last time:
        // if it has not seen these, they are closed here.
        if self.is_running() {
            return true;
        }
        self.shared.incoming.lock().clear();
        false
    }

    /// Makes the loop exit as a failed epoll would (the handle stays).
    #[cfg(test)]
    pub(crate) fn exit_for_test(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Err(error) = self.shared.waker.wake() {
            log::error!("cannot wake an event loop: {error}");
        }
    }

    /// Stops the loop (closing what it still holds) and waits for it.
    pub(crate) fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Err(error) = self.shared.waker.wake() {
            log::error!("cannot wake an event loop to stop it: {error}");
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("an event loop panicked");
            }
        }
    }
}
