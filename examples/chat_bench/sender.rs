//! One sender: waits for the run to start, then writes stamped messages,
//! paced (--rate) or flat out within its window, until the run ends.

use crate::args::Mode;
use crate::member::Writer;
use crate::proto::{Encoder, Stamp};
use crate::shared::{Phase, Shared};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{sleep_until, timeout_at};

/// Most messages written in one call when paced and behind schedule.
const PACED_BATCH_MAX: u64 = 1024;
/// `--ack all`: how often a waiting sender looks again without being woken.
const ACK_RECHECK: Duration = Duration::from_millis(10);
/// How long a blocked write may outlast the run before the sender gives up.
const WRITE_GRACE: Duration = Duration::from_secs(5);

/// A small xorshift generator for picking whisper targets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

pub async fn run(shared: Arc<Shared>, idx: usize, wr: Writer) {
    send(&shared, idx, &wr).await;
    shared.senders[idx].done.store(true, Release);
}

async fn send(shared: &Shared, idx: usize, wr: &Writer) {
    let mut phase = shared.phase.clone();
    let (start, end) = match phase.wait_for(|p| *p != Phase::Connecting).await {
        Ok(p) => match *p {
            Phase::Run { start, end } => (start, end),
            _ => return,
        },
        Err(_) => return,
    };
    let args = &shared.args;
    let me = &shared.senders[idx];
    let members = args.members as u64;
    // Per mille of messages that are whispers.
    let whispers = match args.mode {
        Mode::Private => 1000,
        Mode::Churn => (args.churn.whisper_share * 1000.0).round() as u64,
        _ => 0,
    };
    let churn = args.mode == Mode::Churn;
    let mut public = 0u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((idx as u64 + 1) << 20));
    let mut enc = Encoder::new(args.proto, args.size, &args.name_prefix);
    let mut out = Vec::with_capacity(args.window.max(64) * (args.size + 64));
    let mut seq = 0u64;
    let ack_all = args.ack_all();
    // Paced senders are spread evenly over one period, so that S senders at
    // R msg/s send one message every 1/(S*R) s rather than S at once.
    let start = match args.rate {
        Some(rate) => start + Duration::from_secs_f64(idx as f64 / (args.senders as f64 * rate)),
        None => start,
    };
    sleep_until(start.into()).await;
    loop {
        let n = match args.rate {
            None if ack_all => {
                // Flat out, a message in flight until every member has it.
                let window = args.window as u64;
                loop {
                    let in_flight = seq.saturating_sub(shared.completed(idx));
                    if in_flight < window {
                        break window - in_flight;
                    }
                    let now = Instant::now();
                    if now >= end {
                        return;
                    }
                    // The timeout covers a member that left without a word.
                    let wake = (now + ACK_RECHECK).min(end);
                    let _ = timeout_at(wake.into(), me.progress.notified()).await;
                }
            }
            None => {
                // Flat out: one permit per message in flight, as many as are free.
                match timeout_at(end.into(), me.window.acquire()).await {
                    Ok(Ok(p)) => p.forget(),
                    _ => return,
                }
                let extra = me.window.available_permits().min(args.window - 1);
                if extra > 0 {
                    if let Ok(p) = me.window.try_acquire_many(extra as u32) {
                        p.forget();
                    }
                }
                if Instant::now() >= end {
                    return;
                }
                1 + extra as u64
            }
            Some(rate) => {
                let now = Instant::now();
                if now >= end {
                    return;
                }
                // Message k (from 1) is due at start + (k - 1) / rate.
                let due = ((now - start).as_secs_f64() * rate) as u64 + 1;
                if due <= seq {
                    let next = start + Duration::from_secs_f64(seq as f64 / rate);
                    sleep_until(next.min(end).into()).await;
                    continue;
                }
                (due - seq).min(PACED_BATCH_MAX)
            }
        };
        let sent_ns = shared.now_ns();
        out.clear();
        for _ in 0..n {
            seq += 1;
            let whisper = whispers >= 1000 || (whispers > 0 && rng.next() % 1000 < whispers);
            let target = whisper.then(|| {
                let t = rng.next() % (members - 1);
                (if t >= idx as u64 { t + 1 } else { t }) as usize
            });
            if churn {
                match target {
                    Some(t) => {
                        shared.whispers_to[t].fetch_add(1, Relaxed);
                    }
                    None => public += 1,
                }
            }
            let stamp = Stamp {
                sender: idx as u32,
                seq,
                sent_ns,
            };
            enc.push(&mut out, stamp, target);
        }
        // Counted as sent once handed to the connection: if the write fails,
        // the server dropped us and those messages count as lost.
        me.public.store(public, Relaxed);
        me.sent.store(seq, Relaxed);
        let mut w = wr.lock().await;
        match timeout_at((end + WRITE_GRACE).into(), w.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
