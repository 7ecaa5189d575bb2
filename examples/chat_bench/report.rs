//! The run's figures, the pass/fail verdict, and their two renderings: a
//! table for people and one JSON line for scripts.

use crate::args::{Args, Mode};
use crate::churn::ChurnReport;
use crate::json::Json;
use crate::procfs::ProcSample;
use crate::stats::Latency;
use std::fmt::Write;

/// Counters of a process at three moments: before connecting, after every
/// member joined (and the join lines settled), and after the run.
#[derive(Copy, Clone, Debug, Default)]
pub struct ProcTrace {
    pub before: ProcSample,
    pub connected: ProcSample,
    pub after: ProcSample,
}

#[derive(Debug, Default)]
pub struct Report {
    pub proto: &'static str,
    pub transport: &'static str,
    pub mode: &'static str,
    pub members: usize,
    pub senders: usize,
    pub rate: Option<f64>,
    pub window: usize,
    pub ack: &'static str,
    pub size: usize,
    pub duration: f64,
    pub threads: usize,

    pub joined: usize,
    pub join_failures: usize,
    pub first_error: Option<String>,
    /// Seconds from the first connect to the last welcome.
    pub connect_secs: f64,
    /// Chat: join announcements every member should get, and those received.
    pub join_lines_expected: u64,
    pub join_lines: u64,
    /// Seconds from the first connect until every join line arrived (or timeout).
    pub settle_secs: f64,

    /// Messages written by the senders.
    pub sent: u64,
    /// Payloads received by all members, duplicates included.
    pub deliveries: u64,
    /// Payloads that should have been received.
    pub expected: u64,
    pub lost: u64,
    pub dups: u64,
    pub misordered: u64,
    /// Members whose connection ended before the run did.
    pub disconnected: usize,
    pub first_disconnect: Option<String>,
    /// Chat leave notices received (members leaving as the run stops included).
    pub leave_lines: u64,
    /// Every line received, and the reads that brought them.
    pub lines: u64,
    pub reads: u64,
    /// Lines that were neither payloads, joins, leaves nor protocol framing.
    pub other_lines: u64,
    pub first_other: Option<String>,
    /// Payloads received while the senders were sending.
    pub run_deliveries: u64,
    /// Seconds the senders actually ran.
    pub run_secs: f64,
    /// Seconds spent after the run waiting for outstanding deliveries.
    pub drain_secs: f64,
    pub latency: Latency,
    /// Members spread over this many nodes (one per `--addr`).
    pub nodes: usize,
    /// Several nodes: the latency of deliveries across nodes.
    pub cross_latency: Latency,
    /// Several nodes, public mode: members whose sequence of payloads
    /// differs from the others' (the room's one order broken), and the
    /// first of them.
    pub order_violations: u64,
    pub first_order_violation: Option<String>,

    pub server: Option<ProcTrace>,
    pub loader: ProcTrace,
    /// Churn mode: the churn's own figures.
    pub churn: Option<ChurnReport>,
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl Report {
    pub fn new(args: &Args) -> Self {
        Report {
            proto: args.proto.name(),
            transport: args.transport.name(),
            mode: args.mode.name(),
            members: args.members,
            senders: args.senders,
            rate: args.rate,
            window: args.window,
            ack: match args.mode {
                Mode::Private => "target",
                _ => args.ack.name(),
            },
            size: args.size,
            duration: args.duration,
            threads: args.threads,
            nodes: args.nodes(),
            ..Report::default()
        }
    }

    /// CPU time a process spent over the run (the drain included) per
    /// payload delivered in it: unlike deliveries/s, it holds still when
    /// other programs share the machine. `None` without deliveries.
    pub fn cpu_ns_per_delivery(&self, t: &ProcTrace) -> Option<f64> {
        (self.deliveries > 0)
            .then(|| (t.after.cpu_secs - t.connected.cpu_secs) * 1e9 / self.deliveries as f64)
    }

    pub fn joins_per_sec(&self) -> f64 {
        per_sec(self.joined as u64, self.connect_secs)
    }

    pub fn join_lines_per_sec(&self) -> f64 {
        per_sec(self.join_lines, self.settle_secs)
    }

    /// Payloads per second delivered while the senders ran.
    pub fn deliveries_per_sec(&self) -> f64 {
        per_sec(self.run_deliveries, self.run_secs)
    }

    /// Messages per second: sent (public: each reaches every member) or,
    /// in private mode, delivered to their target while the senders ran.
    pub fn messages_per_sec(&self) -> f64 {
        if self.mode == "private" {
            self.deliveries_per_sec()
        } else {
            per_sec(self.sent, self.run_secs)
        }
    }

    pub fn join_lines_missing(&self) -> u64 {
        self.join_lines_expected.saturating_sub(self.join_lines)
    }

    /// Whether every member joined and every delivery checked out (churn
    /// mode: and no line failed a check, and RSS stayed flat if asked).
    pub fn passed(&self) -> bool {
        self.joined == self.members
            && self.lost == 0
            && self.dups == 0
            && self.misordered == 0
            && self.order_violations == 0
            && self.disconnected == 0
            && self.join_lines_missing() == 0
            && self
                .churn
                .as_ref()
                .is_none_or(|c| c.passed() && self.other_lines == 0)
    }

    /// Churn mode: every check that failed, other than loss and order.
    pub fn errors(&self) -> u64 {
        let churn = self.churn.as_ref().map_or(0, ChurnReport::errors);
        churn + self.other_lines + (self.disconnected + self.join_failures) as u64
    }

    fn rss_per_member_bytes(t: &ProcTrace, members: usize) -> f64 {
        if members == 0 {
            return 0.0;
        }
        (t.connected.rss_kib as f64 - t.before.rss_kib as f64) * 1024.0 / members as f64
    }

    /// Peak RSS growth per member: the highest RSS of the whole run
    /// (`VmHWM`), joins and their notices included.
    fn peak_rss_per_member_bytes(t: &ProcTrace, members: usize) -> f64 {
        if members == 0 {
            return 0.0;
        }
        (t.after.peak_rss_kib as f64 - t.before.rss_kib as f64) * 1024.0 / members as f64
    }

    /// RSS growth per member at the end of the run: in idle mode, what an
    /// idle member costs once the joins have settled.
    fn rss_per_idle_member_bytes(t: &ProcTrace, members: usize) -> f64 {
        if members == 0 {
            return 0.0;
        }
        (t.after.rss_kib as f64 - t.before.rss_kib as f64) * 1024.0 / members as f64
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let rate = match self.rate {
            _ if self.mode == "idle" => "holding".to_owned(),
            Some(r) => format!("{r} msg/s per sender"),
            None => format!("flat out, window {} (ack {})", self.window, self.ack),
        };
        let _ = writeln!(
            s,
            "chat_bench: {} over {} {} | {} members, {} senders, {}, {} B payload, {} s, {} loader threads",
            self.proto,
            self.transport,
            self.mode,
            self.members,
            self.senders,
            rate,
            self.size,
            self.duration,
            self.threads
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<24} {v}");
        };
        let multi = self.nodes > 1;
        if multi {
            row(
                "nodes",
                format!(
                    "{} (member i on the (i mod {})-th --addr)",
                    self.nodes, self.nodes
                ),
            );
        }
        row(
            "joined",
            format!(
                "{}/{} in {:.3} s ({:.0} joins/s)",
                self.joined,
                self.members,
                self.connect_secs,
                self.joins_per_sec()
            ),
        );
        if let Some(e) = &self.first_error {
            row("first join error", e.clone());
        }
        if self.join_lines_expected > 0 {
            row(
                "join lines",
                format!(
                    "{}/{} by {:.3} s ({:.0} lines/s)",
                    self.join_lines,
                    self.join_lines_expected,
                    self.settle_secs,
                    self.join_lines_per_sec()
                ),
            );
        }
        if self.senders > 0 {
            row("sent", format!("{} messages", self.sent));
            row(
                "deliveries",
                format!(
                    "{} of {} expected ({} while sending)",
                    self.deliveries, self.expected, self.run_deliveries
                ),
            );
            row(
                "deliveries/s",
                format!(
                    "{:.0} over {:.3} s",
                    self.deliveries_per_sec(),
                    self.run_secs
                ),
            );
            row("messages/s", format!("{:.0}", self.messages_per_sec()));
            row(
                "latency",
                format!(
                    "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                    self.latency.p50_us as f64 / 1000.0,
                    self.latency.p99_us as f64 / 1000.0,
                    self.latency.max_us as f64 / 1000.0
                ),
            );
            if multi {
                row(
                    "latency across nodes",
                    format!(
                        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} deliveries)",
                        self.cross_latency.p50_us as f64 / 1000.0,
                        self.cross_latency.p99_us as f64 / 1000.0,
                        self.cross_latency.max_us as f64 / 1000.0,
                        self.cross_latency.count
                    ),
                );
            }
            row("drain", format!("{:.3} s", self.drain_secs));
        }
        row(
            "lost / dup / misordered",
            format!("{} / {} / {}", self.lost, self.dups, self.misordered),
        );
        if multi && self.mode == "public" {
            row("order violations", self.order_violations.to_string());
            if let Some(v) = &self.first_order_violation {
                row("first order violation", v.clone());
            }
        }
        row("disconnected", self.disconnected.to_string());
        row(
            "lines received",
            format!(
                "{} in {} reads ({} leave notices)",
                self.lines, self.reads, self.leave_lines
            ),
        );
        if let Some(d) = &self.first_disconnect {
            row("first disconnect", d.clone());
        }
        if self.other_lines > 0 {
            row(
                "other lines",
                format!(
                    "{} (first: {})",
                    self.other_lines,
                    self.first_other.as_deref().unwrap_or("")
                ),
            );
        }
        let mut proc_rows = |who: &str, t: &ProcTrace| {
            let per_delivery = self
                .cpu_ns_per_delivery(t)
                .map(|ns| format!(" ({ns:.1} ns per delivery)"))
                .unwrap_or_default();
            row(
                &format!("{who} cpu"),
                format!(
                    "connect {:.2} s, run {:.2} s{per_delivery}",
                    t.connected.cpu_secs - t.before.cpu_secs,
                    t.after.cpu_secs - t.connected.cpu_secs
                ),
            );
            row(
                &format!("{who} rss"),
                format!(
                    "{} -> {} -> {} KiB, peak {} KiB ({:.0} B per member connected, {:.0} B at the end, {:.0} B at the peak)",
                    t.before.rss_kib,
                    t.connected.rss_kib,
                    t.after.rss_kib,
                    t.after.peak_rss_kib,
                    Self::rss_per_member_bytes(t, self.members),
                    Self::rss_per_idle_member_bytes(t, self.members),
                    Self::peak_rss_per_member_bytes(t, self.members)
                ),
            );
        };
        if let Some(t) = &self.server {
            proc_rows("server", t);
        }
        proc_rows("loader", &self.loader);
        if let Some(c) = &self.churn {
            row("errors", self.errors().to_string());
            c.rows(&mut row);
        }
        let _ = writeln!(
            s,
            "  {:<24} {}",
            "result",
            if self.passed() { "PASS" } else { "FAIL" }
        );
        s
    }

    pub fn json(&self) -> String {
        let mut j = Json::default();
        j.str("proto", self.proto);
        j.str("transport", self.transport);
        j.str("mode", self.mode);
        j.num("members", self.members as f64);
        j.num("senders", self.senders as f64);
        match self.rate {
            Some(r) => j.num("rate", r),
            None => j.raw("rate", "null"),
        }
        j.num("window", self.window as f64);
        j.str("ack", self.ack);
        j.num("size", self.size as f64);
        j.num("duration", self.duration);
        j.num("threads", self.threads as f64);
        j.num("joined", self.joined as f64);
        j.num("join_failures", self.join_failures as f64);
        j.opt_str("first_error", self.first_error.as_deref());
        j.num("connect_secs", self.connect_secs);
        j.num("joins_per_sec", self.joins_per_sec());
        j.num("join_lines_expected", self.join_lines_expected as f64);
        j.num("join_lines", self.join_lines as f64);
        j.num("settle_secs", self.settle_secs);
        j.num("join_lines_per_sec", self.join_lines_per_sec());
        j.num("join_lines_missing", self.join_lines_missing() as f64);
        j.num("sent", self.sent as f64);
        j.num("deliveries", self.deliveries as f64);
        j.num("expected", self.expected as f64);
        j.num("lost", self.lost as f64);
        j.num("dups", self.dups as f64);
        j.num("misordered", self.misordered as f64);
        j.num("disconnected", self.disconnected as f64);
        j.opt_str("first_disconnect", self.first_disconnect.as_deref());
        j.num("other_lines", self.other_lines as f64);
        j.opt_str("first_other", self.first_other.as_deref());
        j.num("leave_lines", self.leave_lines as f64);
        j.num("lines", self.lines as f64);
        j.num("reads", self.reads as f64);
        j.num("run_deliveries", self.run_deliveries as f64);
        j.num("run_secs", self.run_secs);
        j.num("drain_secs", self.drain_secs);
        j.num("deliveries_per_sec", self.deliveries_per_sec());
        j.num("messages_per_sec", self.messages_per_sec());
        j.num("latency_count", self.latency.count as f64);
        j.num("p50_ms", self.latency.p50_us as f64 / 1000.0);
        j.num("p99_ms", self.latency.p99_us as f64 / 1000.0);
        j.num("max_ms", self.latency.max_us as f64 / 1000.0);
        if self.nodes > 1 {
            j.num("nodes", self.nodes as f64);
            j.num("cross_latency_count", self.cross_latency.count as f64);
            j.num("cross_p50_ms", self.cross_latency.p50_us as f64 / 1000.0);
            j.num("cross_p99_ms", self.cross_latency.p99_us as f64 / 1000.0);
            j.num("cross_max_ms", self.cross_latency.max_us as f64 / 1000.0);
            if self.mode == "public" {
                j.num("order_violations", self.order_violations as f64);
                j.opt_str(
                    "first_order_violation",
                    self.first_order_violation.as_deref(),
                );
            }
        }
        let mut trace = |prefix: &str, t: &ProcTrace| {
            j.num(
                &format!("{prefix}_cpu_connect_secs"),
                t.connected.cpu_secs - t.before.cpu_secs,
            );
            j.num(
                &format!("{prefix}_cpu_run_secs"),
                t.after.cpu_secs - t.connected.cpu_secs,
            );
            if let Some(ns) = self.cpu_ns_per_delivery(t) {
                j.num(&format!("{prefix}_cpu_ns_per_delivery"), ns);
            }
            j.num(&format!("{prefix}_rss_before_kib"), t.before.rss_kib as f64);
            j.num(
                &format!("{prefix}_rss_connected_kib"),
                t.connected.rss_kib as f64,
            );
            j.num(&format!("{prefix}_rss_after_kib"), t.after.rss_kib as f64);
            j.num(
                &format!("{prefix}_rss_per_member_bytes"),
                Self::rss_per_member_bytes(t, self.members),
            );
            j.num(
                &format!("{prefix}_rss_per_idle_member_bytes"),
                Self::rss_per_idle_member_bytes(t, self.members),
            );
            j.num(
                &format!("{prefix}_peak_rss_kib"),
                t.after.peak_rss_kib as f64,
            );
            j.num(
                &format!("{prefix}_peak_rss_per_member_bytes"),
                Self::peak_rss_per_member_bytes(t, self.members),
            );
        };
        if let Some(t) = &self.server {
            trace("server", t);
        }
        trace("loader", &self.loader);
        if let Some(c) = &self.churn {
            j.num("errors", self.errors() as f64);
            c.json_fields(&mut j);
        }
        j.raw("passed", if self.passed() { "true" } else { "false" });
        j.finish()
    }
}

impl crate::Outcome for Report {
    fn table(&self) -> String {
        Report::table(self)
    }

    fn json(&self) -> String {
        Report::json(self)
    }

    fn passed(&self) -> bool {
        Report::passed(self)
    }
}
