//! Bounded waits: every wait of the orchestrator ends by a deadline.

use std::time::{Duration, Instant};

/// How often the orchestrator polls the live counters.
const POLL: Duration = Duration::from_millis(5);
/// How long a count may stand still before a wait for it gives up.
const STALL: Duration = Duration::from_secs(3);

/// A flag's seconds as a `Duration` (flags are validated to be finite and
/// non-negative).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Sleeps in small steps until `done()` holds or `deadline` passes;
/// returns whether `done()` held.
pub async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Like [`wait_until`] for a count that should reach `target`, but also
/// gives up once the count has not moved for [`STALL`] (a member that was
/// dropped will never receive the rest).
pub async fn wait_for_count(deadline: Instant, target: u64, count: impl Fn() -> u64) -> bool {
    let mut last = count();
    let mut moved = Instant::now();
    wait_until(deadline, || {
        let now_count = count();
        if now_count != last {
            last = now_count;
            moved = Instant::now();
        }
        now_count >= target || moved.elapsed() >= STALL
    })
    .await;
    count() >= target
}
