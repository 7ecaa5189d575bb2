//! Every open connection, counted against the limit, with its outbox.
//!
//! A connection holds a [`Slot`] from accept to close; dropping the slot
//! frees its place. Shutdown reaches every connection, in the handshake or
//! not, through the outboxes registered here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::outbox::Outbox;

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot is taken.
    Full,
    /// The server is shutting down.
    Closed,
}

#[derive(Default)]
struct Table {
    outboxes: HashMap<u64, Arc<Outbox>>,
    next_id: u64,
    closed: bool,
}

/// The table of open connections.
pub(crate) struct Connections {
    max: usize,
    table: Mutex<Table>,
    emptied: Condvar,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max,
            table: Mutex::new(Table::default()),
            emptied: Condvar::new(),
        })
    }

    /// Takes a slot for a connection whose lines go to `outbox`.
    pub(crate) fn register(self: &Arc<Self>, outbox: Arc<Outbox>) -> Result<Slot, Refusal> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(Refusal::Closed);
        }
        if table.outboxes.len() >= self.max {
            return Err(Refusal::Full);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.outboxes.insert(id, outbox);
        Ok(Slot {
            id,
            connections: Arc::clone(self),
        })
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.table.lock().outboxes.len()
    }

    /// Refuses new connections and closes every outbox with `last` as its
    /// final line (outboxes already closed keep what they had).
    pub(crate) fn close_all(&self, last: &Bytes) {
        let mut table = self.table.lock();
        table.closed = true;
        for outbox in table.outboxes.values() {
            outbox.close_with(last);
        }
    }

    /// Aborts every outbox: writers stop and close their connections.
    pub(crate) fn abort_all(&self) {
        for outbox in self.table.lock().outboxes.values() {
            outbox.abort();
        }
    }

    /// Waits until no connection is open, or `deadline` (`None`: no
    /// deadline). Returns whether none is.
    pub(crate) fn wait_empty(&self, deadline: Option<Instant>) -> bool {
        let mut table = self.table.lock();
        while !table.outboxes.is_empty() {
            match deadline {
                Some(deadline) => {
                    if self.emptied.wait_until(&mut table, deadline).timed_out() {
                        return table.outboxes.is_empty();
                    }
                }
                None => self.emptied.wait(&mut table),
            }
        }
        true
    }
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Slot {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.connections.table.lock();
        table.outboxes.remove(&self.id);
        if table.outboxes.is_empty() {
            self.connections.emptied.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(1024))
    }

    #[test]
    fn slots_are_limited_and_free_themselves() {
        let connections = Connections::new(2);
        let a = connections.register(outbox()).expect("a");
        let _b = connections.register(outbox()).expect("b");
        assert_eq!(connections.register(outbox()).err(), Some(Refusal::Full));
        drop(a);
        assert_eq!(connections.len(), 1);
        assert!(connections.register(outbox()).is_ok());
    }

    #[test]
    fn close_all_refuses_new_ones_and_says_goodbye() {
        let connections = Connections::new(2);
        let out = outbox();
        let slot = connections.register(out.clone()).expect("slot");
        connections.close_all(&Bytes::from_static(b"bye\n"));
        assert_eq!(connections.register(outbox()).err(), Some(Refusal::Closed));
        assert_eq!(out.drain_bytes(), b"bye\n");
        assert!(!connections.wait_empty(Some(Instant::now())));
        drop(slot);
        assert!(connections.wait_empty(Some(Instant::now())));
    }
}
