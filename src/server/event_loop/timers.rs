//! A loop's timers: name timeouts and lingers. Each kind has one duration
//! for every connection, so a queue in deadline order is all it needs.

use std::collections::VecDeque;
use std::time::Instant;

/// Deadlines of one kind, in order: (when, token, generation). An entry
/// whose connection has gone (another generation holds its token) is
/// skipped when it comes due.
#[derive(Default)]
pub(super) struct Timers {
    queue: VecDeque<(Instant, usize, u64)>,
}

impl Timers {
    /// Adds a deadline no earlier than any already queued.
    pub(super) fn push(&mut self, deadline: Instant, token: usize, generation: u64) {
        self.queue.push_back((deadline, token, generation));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.queue.front().map(|&(deadline, _, _)| deadline)
    }

    /// Takes the next (token, generation) whose deadline is `now` or past.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        let &(deadline, token, generation) = self.queue.front()?;
        if deadline > now {
            return None;
        }
        self.queue.pop_front();
        Some((token, generation))
    }
}
