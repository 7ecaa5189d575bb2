//! Why the server ends a connection, as its layers say it (a WebSocket
//! close code): told by the outbox's state and its final line.

use crate::outbox::{Outbox, OutboxState};
use crate::protocol::Reply;
use crate::transport::layer::CloseReason;

/// Why `outbox`'s connection ends: 1000 after `QUIT` (or the client's own
/// end of input), 1001 at shutdown, 1013 when the server is full, 1008 for
/// anything else of the server's (a name timeout, a slow consumer).
pub(crate) fn close_reason(outbox: &Outbox) -> CloseReason {
    if outbox.state() == OutboxState::Aborted {
        return CloseReason::Policy;
    }
    match outbox.last_line() {
        None => CloseReason::Normal,
        Some(last) if last.is_empty() => CloseReason::Normal,
        Some(last) if *last == *Reply::ShuttingDown.encode() => CloseReason::Shutdown,
        Some(last) if *last == *Reply::ServerFull.encode() => CloseReason::Full,
        Some(_) => CloseReason::Policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_its_reason() {
        let quit = Outbox::new(1024);
        quit.close();
        assert_eq!(close_reason(&quit), CloseReason::Normal);
        let shutdown = Outbox::new(1024);
        shutdown.close_with(&Reply::ShuttingDown.encode());
        assert_eq!(close_reason(&shutdown), CloseReason::Shutdown);
        let full = Outbox::new(1024);
        full.close_with(&Reply::ServerFull.encode());
        assert_eq!(close_reason(&full), CloseReason::Full);
        let timeout = Outbox::new(1024);
        timeout.close_with(&Reply::NameTimeout.encode());
        assert_eq!(close_reason(&timeout), CloseReason::Policy);
        let cut = Outbox::new(1024);
        cut.abort();
        assert_eq!(close_reason(&cut), CloseReason::Policy);
    }
}
