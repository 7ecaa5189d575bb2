//! The storm's figures and verdict, as a table and as one JSON line.

use super::ClientOutcome;
use crate::args::Args;
use crate::json::Json;
use crate::procfs::ProcSample;
use crate::transport::{Reader, Writer};
use crate::Outcome;
use std::fmt::Write;
use std::time::{Duration, Instant};
use tokio::task::JoinError;

/// One burst: when it started, clients still without an outcome, and when
/// the last reply among its clients came.
struct Burst {
    start: Instant,
    left: usize,
    last_reply: Option<Instant>,
}

/// What the storm measured.
#[derive(Default)]
pub struct StormReport {
    proto: &'static str,
    transport: &'static str,
    clients: usize,
    burst: usize,
    burst_wait: f64,
    timeout: f64,
    bursts: Vec<Burst>,
    /// Per client that got its reply: seconds from its burst's start to the
    /// reply, and to its TCP connect.
    reply_secs: Vec<f64>,
    connect_secs: Vec<f64>,
    /// When the last reply arrived.
    last_reply: Option<Instant>,
    /// Clients that got their reply.
    pub replied: usize,
    /// Clients whose connection failed or who got another line.
    pub failed: usize,
    pub first_failure: Option<String>,
    /// Clients with no reply by their deadline, and those of them whose TCP
    /// connect never completed.
    pub stragglers: usize,
    pub stragglers_unconnected: usize,
    /// Seconds from the first connect to the last reply.
    last_secs: f64,
    /// Server CPU time and RSS before and after the storm.
    pub server: Option<(ProcSample, ProcSample)>,
    pub loader_rss_kib: u64,
}

/// The value at quantile `q` of sorted `v` (0 when empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

impl StormReport {
    pub fn new(args: &Args) -> Self {
        StormReport {
            proto: args.proto.name(),
            transport: args.transport.name(),
            clients: args.members,
            burst: args.storm.burst,
            burst_wait: args.storm.burst_wait,
            timeout: args.storm.storm_timeout,
            ..StormReport::default()
        }
    }

    /// Notes a burst of `count` clients starting at `start`; returns its index.
    pub fn start_burst(&mut self, start: Instant, count: usize) -> usize {
        self.bursts.push(Burst {
            start,
            left: count,
            last_reply: None,
        });
        self.bursts.len() - 1
    }

    /// Whether every client of burst `b` has an outcome.
    pub fn burst_settled(&self, b: usize) -> bool {
        self.bursts.get(b).is_none_or(|x| x.left == 0)
    }

    /// Counts one client's outcome; a reply's connection joins `held`.
    pub fn note(
        &mut self,
        done: Result<(usize, ClientOutcome), JoinError>,
        held: &mut Vec<(Reader, Writer)>,
    ) {
        let (b, outcome) = match done {
            Ok(x) => x,
            Err(e) => {
                self.failed += 1;
                self.first_failure
                    .get_or_insert(format!("client task: {e}"));
                return;
            }
        };
        match outcome {
            ClientOutcome::Replied {
                connected,
                replied,
                at,
                conn,
            } => {
                self.replied += 1;
                self.reply_secs.push(replied.as_secs_f64());
                self.connect_secs.push(connected.as_secs_f64());
                self.last_reply = Some(self.last_reply.map_or(at, |l| l.max(at)));
                if let Some(burst) = self.bursts.get_mut(b) {
                    burst.last_reply = Some(burst.last_reply.map_or(at, |l| l.max(at)));
                }
                held.push(conn);
            }
            ClientOutcome::Failed(why) => {
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
            ClientOutcome::Straggler { connected } => {
                self.stragglers += 1;
                if !connected {
                    self.stragglers_unconnected += 1;
                }
            }
        }
        if let Some(burst) = self.bursts.get_mut(b) {
            burst.left = burst.left.saturating_sub(1);
        }
    }

    /// Settles the figures once every client has an outcome.
    pub fn finish(&mut self, t0: Instant) {
        self.reply_secs.sort_by(f64::total_cmp);
        self.connect_secs.sort_by(f64::total_cmp);
        self.last_secs = self
            .last_reply
            .map_or(0.0, |l| l.saturating_duration_since(t0).as_secs_f64());
    }

    /// Seconds until every client had its reply; `None` unless all did.
    pub fn all_secs(&self) -> Option<f64> {
        (self.replied == self.clients).then_some(self.last_secs)
    }

    /// The slowest client's seconds from its burst's start to its reply.
    fn slowest_secs(&self) -> f64 {
        self.reply_secs.last().copied().unwrap_or(0.0)
    }

    /// The longest burst, from its start until the last reply among its
    /// clients (stragglers and failures not counted).
    fn longest_burst_secs(&self) -> f64 {
        self.bursts
            .iter()
            .filter_map(|b| b.last_reply.map(|d| d.duration_since(b.start)))
            .max()
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }

    fn reply_name(&self) -> &'static str {
        if self.proto == "nats" {
            "PONG"
        } else {
            "NAME"
        }
    }
}

impl Outcome for StormReport {
    fn passed(&self) -> bool {
        self.replied == self.clients
    }

    fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chat_bench: {} over {} storm | {} clients in bursts of {} (next burst once the last \
             has its replies, at most {} s), straggler after {} s",
            self.proto, self.transport, self.clients, self.burst, self.burst_wait, self.timeout
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<24} {v}");
        };
        row(
            &format!("got {}", self.reply_name()),
            format!("{}/{}", self.replied, self.clients),
        );
        row(
            "time to all",
            match self.all_secs() {
                Some(t) => format!("{t:.3} s"),
                None => format!("never (last reply at {:.3} s)", self.last_secs),
            },
        );
        let r = &self.reply_secs;
        row(
            "per client reply",
            format!(
                "p50 {:.3} s, p99 {:.3} s, slowest {:.3} s",
                quantile(r, 0.5),
                quantile(r, 0.99),
                self.slowest_secs()
            ),
        );
        let c = &self.connect_secs;
        row(
            "per client connect",
            format!(
                "p50 {:.3} s, p99 {:.3} s, slowest {:.3} s",
                quantile(c, 0.5),
                quantile(c, 0.99),
                quantile(c, 1.0)
            ),
        );
        row(
            "bursts",
            format!(
                "{}, longest {:.3} s to its last reply",
                self.bursts.len(),
                self.longest_burst_secs()
            ),
        );
        row(
            "stragglers",
            format!(
                "{} ({} never connected)",
                self.stragglers, self.stragglers_unconnected
            ),
        );
        row("failed", self.failed.to_string());
        if let Some(e) = &self.first_failure {
            row("first failure", e.clone());
        }
        if let Some((before, after)) = &self.server {
            row(
                "server",
                format!(
                    "cpu {:.2} s, rss {} -> {} KiB",
                    after.cpu_secs - before.cpu_secs,
                    before.rss_kib,
                    after.rss_kib
                ),
            );
        }
        row("loader rss", format!("{} KiB", self.loader_rss_kib));
        row(
            "result",
            (if self.passed() { "PASS" } else { "FAIL" }).to_owned(),
        );
        s
    }

    fn json(&self) -> String {
        let mut j = Json::default();
        j.str("proto", self.proto);
        j.str("transport", self.transport);
        j.str("mode", "storm");
        j.num("members", self.clients as f64);
        j.num("burst", self.burst as f64);
        j.num("burst_wait", self.burst_wait);
        j.num("storm_timeout", self.timeout);
        j.num("bursts", self.bursts.len() as f64);
        j.num("joined", self.replied as f64);
        match self.all_secs() {
            Some(t) => j.num("storm_all_secs", t),
            None => j.raw("storm_all_secs", "null"),
        }
        j.num("storm_last_secs", self.last_secs);
        j.num("storm_p50_secs", quantile(&self.reply_secs, 0.5));
        j.num("storm_p99_secs", quantile(&self.reply_secs, 0.99));
        j.num("storm_slowest_secs", self.slowest_secs());
        j.num("storm_connect_p99_secs", quantile(&self.connect_secs, 0.99));
        j.num("storm_longest_burst_secs", self.longest_burst_secs());
        j.num("stragglers", self.stragglers as f64);
        j.num("stragglers_unconnected", self.stragglers_unconnected as f64);
        j.num("failed", self.failed as f64);
        j.opt_str("first_failure", self.first_failure.as_deref());
        if let Some((before, after)) = &self.server {
            j.num("server_cpu_secs", after.cpu_secs - before.cpu_secs);
            j.num("server_rss_before_kib", before.rss_kib as f64);
            j.num("server_rss_after_kib", after.rss_kib as f64);
        }
        j.num("loader_rss_kib", self.loader_rss_kib as f64);
        j.raw("passed", if self.passed() { "true" } else { "false" });
        j.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_values() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
