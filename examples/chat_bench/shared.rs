//! State shared by the orchestrator and every member task: live counters,
//! the senders' flow-control windows, and the phase signals.

use crate::args::{Args, Mode};
use crate::transport::Connector;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{watch, Notify, Semaphore};

/// Where the run is, as the senders see it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Members are connecting; senders wait.
    Connecting,
    /// Senders send from `start` until `end`.
    Run { start: Instant, end: Instant },
    /// The run was called off; senders exit without sending.
    Abort,
}

/// Live counters of one member, published by its reader after every read,
/// so the orchestrator can tell when deliveries are complete.
#[derive(Default)]
pub struct LiveCounters {
    pub deliveries: AtomicU64,
    pub joins: AtomicU64,
    /// Lines that failed a check other than loss and order (churn mode).
    pub errors: AtomicU64,
    pub closed: AtomicBool,
}

/// One sender's flow control and progress.
pub struct SenderState {
    /// Flat out: one permit per message that may be in flight.
    pub window: Semaphore,
    /// `--ack all`: woken when a member has received more from this sender.
    pub progress: Notify,
    /// Messages written so far (the last sequence number used).
    pub sent: AtomicU64,
    /// Churn mode: of those, the public ones.
    pub public: AtomicU64,
    /// Set when the sender has stopped for good.
    pub done: AtomicBool,
}

pub struct Shared {
    pub args: Args,
    /// Clock origin of every payload's send time.
    pub t0: Instant,
    pub live: Vec<LiveCounters>,
    /// `--ack all`: per member (rows) and sender (columns), the highest
    /// sequence number received, published after every read.
    pub received: Vec<AtomicU64>,
    /// Churn mode: per steady member, the whispers written to it.
    pub whispers_to: Vec<AtomicU64>,
    pub senders: Vec<SenderState>,
    /// Bounds the handshakes in progress.
    pub connect_gate: Semaphore,
    pub joined: AtomicUsize,
    pub failed: AtomicUsize,
    /// Nanoseconds since `t0` at which the last member joined.
    pub last_join_ns: AtomicU64,
    /// Woken on every join or failure.
    pub progress: Notify,
    pub first_error: Mutex<Option<String>>,
    pub phase: watch::Receiver<Phase>,
    /// Opens the members' connections over `--transport`.
    pub connector: Connector,
}

impl Shared {
    pub fn new(args: Args, connector: Connector, phase: watch::Receiver<Phase>) -> Self {
        let window = if args.flat_out() { args.window } else { 0 };
        Shared {
            t0: Instant::now(),
            live: (0..args.members).map(|_| LiveCounters::default()).collect(),
            received: if args.ack_all() {
                (0..args.members * args.senders)
                    .map(|_| AtomicU64::new(0))
                    .collect()
            } else {
                Vec::new()
            },
            whispers_to: if args.mode == Mode::Churn {
                (0..args.members).map(|_| AtomicU64::new(0)).collect()
            } else {
                Vec::new()
            },
            senders: (0..args.senders)
                .map(|_| SenderState {
                    window: Semaphore::new(window),
                    progress: Notify::new(),
                    sent: AtomicU64::new(0),
                    public: AtomicU64::new(0),
                    done: AtomicBool::new(false),
                })
                .collect(),
            connect_gate: Semaphore::new(args.connect_concurrency),
            joined: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_join_ns: AtomicU64::new(0),
            progress: Notify::new(),
            first_error: Mutex::new(None),
            phase,
            connector,
            args,
        }
    }

    /// Nanoseconds since `t0`.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Whether receivers give window permits back to senders on delivery.
    pub fn acks(&self) -> bool {
        self.args.flat_out() && self.args.mode != Mode::Idle
    }

    pub fn note_joined(&self) {
        self.last_join_ns.fetch_max(self.now_ns(), Relaxed);
        self.joined.fetch_add(1, Relaxed);
        self.progress.notify_one();
    }

    pub fn note_failed(&self, why: String) {
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(why);
        }
        self.failed.fetch_add(1, Relaxed);
        self.progress.notify_one();
    }

    /// `--ack all`: how many of `sender`'s messages every member still
    /// connected has received (each member receives them in order).
    pub fn completed(&self, sender: usize) -> u64 {
        let s = self.args.senders;
        self.live
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.closed.load(Relaxed))
            .map(|(m, _)| self.received[m * s + sender].load(Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    pub fn total_deliveries(&self) -> u64 {
        self.live.iter().map(|c| c.deliveries.load(Relaxed)).sum()
    }

    pub fn total_joins(&self) -> u64 {
        self.live.iter().map(|c| c.joins.load(Relaxed)).sum()
    }

    /// Churn mode: the payloads steady member `m` should receive: every
    /// public line, and the whispers written to it.
    pub fn expected_for(&self, m: usize) -> u64 {
        let public: u64 = self.senders.iter().map(|s| s.public.load(Relaxed)).sum();
        public + self.whispers_to.get(m).map_or(0, |w| w.load(Relaxed))
    }

    /// Churn mode: lines that failed a check, over every steady member.
    pub fn total_errors(&self) -> u64 {
        self.live.iter().map(|c| c.errors.load(Relaxed)).sum()
    }

    pub fn total_sent(&self) -> u64 {
        self.senders.iter().map(|s| s.sent.load(Relaxed)).sum()
    }
}
