//! The never-read scenario's figures and verdict, as a table and as one
//! JSON line.

use crate::args::Args;
use crate::json::Json;
use crate::Outcome;
use std::fmt::Write;

/// What the never-read scenario measured.
#[derive(Default)]
pub struct NeverReadReport {
    never_readers: usize,
    line: usize,
    window: usize,
    /// Never-reading members whose join the sender saw.
    pub joined: u64,
    /// Leave notices the sender saw (never-reading members cut).
    pub left: u64,
    /// Seconds from the start of sending until the last never-reading
    /// member was cut.
    pub all_cut_secs: Option<f64>,
    pub connect_secs: f64,
    pub run_secs: f64,
    pub sent_lines: u64,
    pub received_lines: u64,
    pub misordered: u64,
    /// The server closed the sender's connection.
    pub sender_cut: bool,
    pub failures: u64,
    pub first_failure: Option<String>,
    pub server_rss_before_kib: u64,
    pub server_rss_settled_kib: u64,
    pub server_rss_max_sampled_kib: u64,
    /// The server's `VmHWM`: its peak RSS since it started.
    pub server_peak_rss_kib: u64,
    pub server_rss_end_kib: u64,
    pub server_cpu_secs: f64,
    pub loader_rss_kib: u64,
}

impl NeverReadReport {
    pub fn new(args: &Args) -> Self {
        NeverReadReport {
            never_readers: args.members,
            line: args.never_read.nr_line,
            window: args.never_read.nr_window,
            ..Self::default()
        }
    }

    pub fn note_failure(&mut self, why: String) {
        self.failures += 1;
        self.first_failure.get_or_insert(why);
    }

    /// The sender's own lines per second.
    fn lines_per_sec(&self) -> f64 {
        if self.run_secs > 0.0 {
            self.received_lines as f64 / self.run_secs
        } else {
            0.0
        }
    }
}

impl Outcome for NeverReadReport {
    fn table(&self) -> String {
        let mut t = String::new();
        let mib = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(
            t,
            "never-read: {} members that never read, one sender of {}-byte lines ({} bytes in flight at most)",
            self.never_readers, self.line, self.window
        );
        let _ = writeln!(t, "  joined                {}", self.joined);
        let _ = writeln!(t, "  cut (leave notices)   {}", self.left);
        match self.all_cut_secs {
            Some(s) => {
                let _ = writeln!(t, "  all cut after         {s:.3} s of sending");
            }
            None => {
                let _ = writeln!(t, "  all cut after         (not all cut)");
            }
        }
        let _ = writeln!(
            t,
            "  sender                {} lines sent, {} received, {} misordered, cut: {}",
            self.sent_lines, self.received_lines, self.misordered, self.sender_cut
        );
        let _ = writeln!(
            t,
            "  sender throughput     {:.0} lines/s over {:.1} s",
            self.lines_per_sec(),
            self.run_secs
        );
        let _ = writeln!(
            t,
            "  server RSS MiB        before {:.1}, joined {:.1}, peak {:.1} (sampled max {:.1}), end {:.1}",
            mib(self.server_rss_before_kib),
            mib(self.server_rss_settled_kib),
            mib(self.server_peak_rss_kib),
            mib(self.server_rss_max_sampled_kib),
            mib(self.server_rss_end_kib)
        );
        let _ = writeln!(t, "  server cpu            {:.2} s", self.server_cpu_secs);
        if let Some(f) = &self.first_failure {
            let _ = writeln!(t, "  failures              {} (first: {f})", self.failures);
        }
        let _ = writeln!(
            t,
            "  verdict               {}",
            if self.passed() { "PASS" } else { "FAIL" }
        );
        t
    }

    fn json(&self) -> String {
        let mut j = Json::default();
        j.str("mode", "never-read");
        j.num("never_readers", self.never_readers as f64);
        j.num("line_bytes", self.line as f64);
        j.num("window_bytes", self.window as f64);
        j.num("joined", self.joined as f64);
        j.num("cut", self.left as f64);
        match self.all_cut_secs {
            Some(s) => j.num("all_cut_secs", s),
            None => j.raw("all_cut_secs", "null"),
        }
        j.num("connect_secs", self.connect_secs);
        j.num("run_secs", self.run_secs);
        j.num("sent", self.sent_lines as f64);
        j.num("received", self.received_lines as f64);
        j.num("misordered", self.misordered as f64);
        j.raw("sender_cut", if self.sender_cut { "true" } else { "false" });
        // Numbers for scripts: lines sent and never received, and 1 if the
        // sender was cut.
        j.num(
            "lost",
            self.sent_lines.saturating_sub(self.received_lines) as f64,
        );
        j.num("sender_cut_runs", u8::from(self.sender_cut) as f64);
        j.num("sender_lines_per_sec", self.lines_per_sec());
        j.num("failures", self.failures as f64);
        j.opt_str("first_failure", self.first_failure.as_deref());
        j.num("server_rss_before_kib", self.server_rss_before_kib as f64);
        j.num("server_rss_joined_kib", self.server_rss_settled_kib as f64);
        j.num("server_peak_rss_kib", self.server_peak_rss_kib as f64);
        j.num(
            "server_rss_max_sampled_kib",
            self.server_rss_max_sampled_kib as f64,
        );
        j.num("server_rss_end_kib", self.server_rss_end_kib as f64);
        j.num(
            "server_peak_rss_mib",
            self.server_peak_rss_kib as f64 / 1024.0,
        );
        j.num("server_cpu_secs", self.server_cpu_secs);
        j.num("loader_rss_kib", self.loader_rss_kib as f64);
        j.raw("passed", if self.passed() { "true" } else { "false" });
        j.finish()
    }

    /// Every never-reading member joined, the sender was never cut and got
    /// every line it sent, in order.
    fn passed(&self) -> bool {
        self.joined == self.never_readers as u64
            && !self.sender_cut
            && self.received_lines == self.sent_lines
            && self.misordered == 0
            && self.failures == 0
    }
}
