//! The shutdown handle.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::protocol::Reply;
use crate::room::Room;

use super::connections::Connections;

struct Inner {
    triggered: AtomicBool,
    room: Room,
    connections: Arc<Connections>,
    wake_accept: Box<dyn Fn() + Send + Sync>,
}

/// Stops a [`Server`](crate::Server). Cheap to clone; any thread may call
/// [`Shutdown::trigger`], once or many times.
///
/// From the moment it is triggered no line is accepted and nobody joins.
/// Every connection gets what it was sent before, then `Server is shutting
/// down.` as its last line, and is closed; the server's `run` returns once
/// they are all closed (or the grace period has passed).
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    pub(crate) fn new(
        room: Room,
        connections: Arc<Connections>,
        wake_accept: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                triggered: AtomicBool::new(false),
                room,
                connections,
                wake_accept,
            }),
        }
    }

    /// Begins the shutdown. Returns at once (with a
    /// [`RoomBackend`](crate::room::RoomBackend), once it has closed its
    /// room: a room across servers first waits, briefly, for its members'
    /// lines still on their way); later calls do nothing.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        log::info!("shutting down");
        let last = Reply::ShuttingDown.encode();
        // The room first, in one critical section: members get every line
        // accepted before, then the last line. Then connections still in the
        // handshake (members' outboxes are already closed and keep theirs).
        // A name that arrives between the two finds the room closed: its
        // session closes its outbox with this same line (see
        // `Session::receive`), and `close_all` adds nothing to it.
        self.inner.room.close(&last);
        self.inner.connections.close_all(&last);
        (self.inner.wake_accept)();
    }

    /// Whether the shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}
