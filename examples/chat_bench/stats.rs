//! Delivery checking: what each member saw, and the totals over all members.

use crate::churn::Notices;
use crate::order::{self, OrderTrace};
use crate::proto::Stamp;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Latencies are recorded in microseconds, 3 significant figures, up to an hour.
const LAT_MAX_US: u64 = 3_600_000_000;
const LAT_SIGFIG: u8 = 3;

type Shared<T> = Arc<Mutex<T>>;

/// One thread's latencies: of every delivery, and of those that crossed
/// nodes (the receiver on another node than the sender; several `--addr`).
pub struct Latencies {
    pub all: Histogram<u64>,
    pub cross: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LAT_MAX_US, LAT_SIGFIG).expect("valid histogram bounds")
}

/// Every thread's latency histograms, merged at the end of the run.
static HISTOGRAMS: Mutex<Vec<Shared<Latencies>>> = Mutex::new(Vec::new());

thread_local! {
    /// Latencies are recorded per thread, not per member: a thousand
    /// per-member histograms would miss the cache on every delivery.
    static LOCAL: Shared<Latencies> = {
        let h = Arc::new(Mutex::new(Latencies {
            all: histogram(),
            cross: histogram(),
        }));
        lock(&HISTOGRAMS).push(h.clone());
        h
    };
}

/// Locks a mutex, even one poisoned by a panicking thread (counters stay usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` with this thread's latency histograms.
pub fn with_latencies<R>(f: impl FnOnce(&mut Latencies) -> R) -> R {
    LOCAL.with(|h| f(&mut lock(h)))
}

/// All threads' latencies together: of every delivery, and across nodes.
fn merged_latencies() -> (Histogram<u64>, Histogram<u64>) {
    let (mut all, mut cross) = (histogram(), histogram());
    for h in lock(&HISTOGRAMS).iter() {
        let h = lock(h);
        all.add(&h.all).expect("same histogram bounds");
        cross.add(&h.cross).expect("same histogram bounds");
    }
    (all, cross)
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Latencies of one read, run-length coded before they reach the histogram:
/// the messages a sender writes together carry one send time and mostly
/// arrive together, so runs of equal values are common under load.
pub struct LatencyRun<'a> {
    hist: &'a mut Histogram<u64>,
    us: u64,
    n: u64,
}

impl<'a> LatencyRun<'a> {
    pub fn new(hist: &'a mut Histogram<u64>) -> Self {
        LatencyRun { hist, us: 0, n: 0 }
    }

    #[inline]
    pub fn add(&mut self, us: u64) {
        if us == self.us {
            self.n += 1;
        } else {
            self.flush();
            self.us = us;
            self.n = 1;
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.hist.saturating_record_n(self.us, self.n);
            self.n = 0;
        }
    }
}

impl Drop for LatencyRun<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one member received, checked delivery by delivery. Owned by the
/// member's reader task; handed back when the member stops.
pub struct MemberStats {
    /// Whether the member completed its handshake.
    pub joined: bool,
    /// Every line received, handshake included.
    pub lines: u64,
    /// Benchmark payloads received.
    pub deliveries: u64,
    /// Payloads whose sequence number equals the previous one from that sender.
    pub dups: u64,
    /// Payloads whose sequence number is below the previous one from that sender.
    pub misordered: u64,
    /// Chat join announcements received.
    pub joins: u64,
    /// Chat leave notices received.
    pub leaves: u64,
    /// Reads that returned data.
    pub reads: u64,
    /// Lines the generator did not expect (errors, leave notices, ...).
    pub other: u64,
    /// First unexpected line, for the report.
    pub first_other: Option<String>,
    /// Why the connection ended before the run did, if it did.
    pub closed_early: Option<String>,
    /// Churn mode: the join and leave notices' check.
    pub notices: Option<Notices>,
    /// Several nodes, public mode: the sequence of payloads, for the
    /// check that every member sees one order.
    pub order: Option<OrderTrace>,
    /// Highest sequence number seen per sender (0 = none yet).
    last_seq: Vec<u64>,
}

impl MemberStats {
    pub fn new(senders: usize) -> Self {
        MemberStats {
            joined: false,
            lines: 0,
            deliveries: 0,
            dups: 0,
            misordered: 0,
            joins: 0,
            leaves: 0,
            reads: 0,
            other: 0,
            first_other: None,
            closed_early: None,
            notices: None,
            order: None,
            last_seq: vec![0; senders],
        }
    }

    /// Checks one payload received at `now_ns` (same clock as the stamp).
    /// Returns its latency in microseconds, or `None` if it names no known
    /// sender.
    #[inline]
    pub fn record(&mut self, s: Stamp, now_ns: u64) -> Option<u64> {
        let Some(last) = self.last_seq.get_mut(s.sender as usize) else {
            self.note_other(b"payload from an unknown sender");
            return None;
        };
        if s.seq == *last {
            self.dups += 1;
        } else if s.seq < *last {
            self.misordered += 1;
        } else {
            *last = s.seq;
        }
        self.deliveries += 1;
        if let Some(order) = &mut self.order {
            order.push(s.sender, s.seq);
        }
        Some((now_ns.saturating_sub(s.sent_ns) / 1000).max(1))
    }

    /// Lines that failed a check other than loss and order: unexpected
    /// lines, and (churn mode) malformed notices.
    pub fn errors(&self) -> u64 {
        self.other + self.notices.as_ref().map_or(0, |n| n.bad)
    }

    /// The highest sequence number received from `sender` (0 = none).
    pub fn last_seq(&self, sender: usize) -> u64 {
        self.last_seq.get(sender).copied().unwrap_or(0)
    }

    /// Counts a join notice, and checks it when notices are checked.
    pub fn note_join(&mut self, line: &[u8]) {
        self.joins += 1;
        if let Some(n) = &mut self.notices {
            n.joined(line);
        }
    }

    /// Counts a leave notice, and checks it when notices are checked.
    pub fn note_leave(&mut self, line: &[u8]) {
        self.leaves += 1;
        if let Some(n) = &mut self.notices {
            n.left(line);
        }
    }

    /// Counts an unexpected line, keeping the first for the report.
    pub fn note_other(&mut self, line: &[u8]) {
        self.other += 1;
        if self.first_other.is_none() {
            let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
            self.first_other = Some(text.into_owned());
        }
    }
}

/// Latency summary in microseconds.
#[derive(Default, Clone, Copy, Debug)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Totals over all members.
#[derive(Default, Debug)]
pub struct Totals {
    pub joined: usize,
    pub lines: u64,
    pub deliveries: u64,
    pub dups: u64,
    pub misordered: u64,
    pub joins: u64,
    pub leaves: u64,
    pub reads: u64,
    pub other: u64,
    pub first_other: Option<String>,
    pub disconnected: usize,
    pub first_disconnect: Option<String>,
    /// Churn mode: notices that failed their check, and the first of them.
    pub bad_notices: u64,
    pub first_bad_notice: Option<String>,
    /// Per member, payloads received minus duplicates (for the loss check).
    pub unique_per_member: Vec<u64>,
    pub latency: Latency,
    /// Several nodes: the latency of deliveries to a member on another
    /// node than the sender's.
    pub cross_latency: Latency,
    /// Several nodes, public mode: members whose sequence of payloads
    /// differs from the reference member's (the one that received the
    /// most), and the first of them.
    pub order_violations: u64,
    pub first_order_violation: Option<String>,
}

impl Totals {
    /// Adds up the members' stats and every thread's latencies.
    pub fn merge(members: Vec<MemberStats>) -> Totals {
        let mut t = Totals::default();
        let traces: Vec<(usize, OrderTrace)> = members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.order.clone().map(|o| (i, o)))
            .collect();
        (t.order_violations, t.first_order_violation) = order::violations(&traces);
        for m in members {
            t.unique_per_member.push(m.deliveries - m.dups);
            if m.joined {
                t.joined += 1;
            }
            t.lines += m.lines;
            t.deliveries += m.deliveries;
            t.dups += m.dups;
            t.misordered += m.misordered;
            t.joins += m.joins;
            t.leaves += m.leaves;
            t.reads += m.reads;
            t.other += m.other;
            if t.first_other.is_none() {
                t.first_other = m.first_other;
            }
            if let Some(n) = m.notices {
                t.bad_notices += n.bad;
                if t.first_bad_notice.is_none() {
                    t.first_bad_notice = n.first_bad;
                }
            }
            if let Some(why) = m.closed_early {
                t.disconnected += 1;
                t.first_disconnect.get_or_insert(why);
            }
        }
        let (all, cross) = merged_latencies();
        t.latency = Latency::of(&all);
        t.cross_latency = Latency::of(&cross);
        t
    }
}
