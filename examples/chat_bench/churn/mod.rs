//! `--mode churn`: a soak.
//!
//! The `--members` steady members join first (chat only) and stay; the first
//! `--senders` of them send paced lines (`--rate` per sender), a share of
//! them (`--whisper-share`) whispers to a random other steady member. Every
//! payload a steady member receives is checked as in the other modes: none
//! lost, none twice, each sender's in order.
//!
//! Meanwhile `--churners` members join and leave continuously: each stay
//! takes a fresh name (`<prefix>z<n>`), reads its welcome and its own join
//! notice, stays between `--stay-min` and `--stay-max` seconds reading and
//! checking what it gets (payloads in order per sender, none before its own
//! join notice, notices well-formed), then leaves by `QUIT` (a `--quit-share`
//! of stays; it then reads until the server closes) or by just closing.
//! Steady members check every churning name's notices: well-formed, joined
//! once, then left once, in that order, wherever they fall among the lines.
//!
//! Every `--sample-every` seconds (and at the start and the end) one line
//! gives the server's RSS (with `--server-pid`) and the counts so far. RSS is
//! flat when no sample after the baseline (the first sample at least
//! `--warmup` seconds in) is more than `--rss-tolerance` percent above it.

mod churner;
mod notices;
mod report;

use crate::args::{Mode, Proto};
use crate::procfs;
use crate::shared::Shared;
use crate::wait::secs;
use churner::Counters;
use clap::Args as ClapArgs;
pub use notices::Notices;
pub use report::ChurnReport;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at};

/// How long the churning members may take, after the run's end, to finish
/// their last stay (each of its steps is bounded by 10 s).
const CHURNER_GRACE: Duration = Duration::from_secs(25);

/// Flags of the churn mode.
#[derive(ClapArgs, Debug, Clone)]
pub struct ChurnArgs {
    /// Churn: members that join and leave continuously, besides --members.
    #[arg(long, default_value_t = 20)]
    pub churners: usize,
    /// Churn: shortest stay of a churning member, in seconds.
    #[arg(long, default_value_t = 0.05)]
    pub stay_min: f64,
    /// Churn: longest stay of a churning member, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub stay_max: f64,
    /// Churn: share of stays that end with QUIT (the others just close).
    #[arg(long, default_value_t = 0.5)]
    pub quit_share: f64,
    /// Churn: share of the senders' messages that are whispers.
    #[arg(long, default_value_t = 0.2)]
    pub whisper_share: f64,
    /// Churn: seconds between two samples of the server's RSS.
    #[arg(long, default_value_t = 10.0)]
    pub sample_every: f64,
    /// Churn: seconds of warm-up; the first sample after it is the RSS baseline.
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// Churn: how far RSS may grow above the baseline and still be flat, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance: f64,
    /// Churn: fail unless RSS stayed flat after warm-up (needs --server-pid
    /// and a sample after the warm-up).
    #[arg(long)]
    pub rss_check: bool,
}

impl ChurnArgs {
    /// Checks the churn flags (they are ignored in the other modes).
    pub fn validate(
        &self,
        mode: Mode,
        proto: Proto,
        members: usize,
        rate: Option<f64>,
        name_prefix: &str,
    ) -> Result<(), String> {
        if mode != Mode::Churn {
            return Ok(());
        }
        if proto != Proto::Chat {
            return Err("churn mode needs --proto chat (nats has no joins to churn)".into());
        }
        if rate.is_none() {
            return Err("churn mode needs --rate (its senders are paced)".into());
        }
        if self.churners == 0 {
            return Err("--churners must be at least 1".into());
        }
        let in_range = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
        if !in_range(self.stay_min, 0.0, 3_600.0)
            || !in_range(self.stay_max, 0.0, 3_600.0)
            || self.stay_min > self.stay_max
        {
            return Err("--stay-min and --stay-max: 0 <= min <= max <= 3600 seconds".into());
        }
        if !in_range(self.quit_share, 0.0, 1.0) || !in_range(self.whisper_share, 0.0, 1.0) {
            return Err("--quit-share and --whisper-share are shares from 0 to 1".into());
        }
        if self.whisper_share > 0.0 && members < 2 {
            return Err("whispers need at least 2 members (or --whisper-share 0)".into());
        }
        if !in_range(self.sample_every, 0.1, 86_400.0) {
            return Err("--sample-every must be 0.1 to 86400 seconds".into());
        }
        if !in_range(self.warmup, 0.0, 86_400.0) || !in_range(self.rss_tolerance, 0.0, 1e6) {
            return Err("--warmup must be 0 to 86400 seconds, --rss-tolerance a percentage".into());
        }
        // A stay's name is the prefix, `z` and up to 20 digits.
        if name_prefix.chars().count() + 21 > 32 {
            return Err("churn mode needs a --name-prefix of at most 11 characters".into());
        }
        Ok(())
    }
}

/// Runs the churn from `start` until `end` (the senders run meanwhile),
/// sampling as it goes, then waits for the churning members to finish their
/// last stay.
pub async fn run(shared: &Arc<Shared>, start: Instant, end: Instant) -> ChurnReport {
    let args = &shared.args;
    let c = &args.churn;
    let counters = Arc::new(Counters::default());
    let mut churners = JoinSet::new();
    for k in 0..c.churners {
        churners.spawn(churner::run(
            shared.clone(),
            counters.clone(),
            k,
            start,
            end,
        ));
    }
    let mut report = ChurnReport::new(c);
    let every = secs(c.sample_every);
    let mut at = start;
    loop {
        sleep_until(at.into()).await;
        let rss = args
            .server_pid()
            .and_then(|pid| match procfs::sample(Some(pid)) {
                Ok(s) => Some(s.rss_kib),
                Err(e) => {
                    report.note_sample_error(e);
                    None
                }
            });
        let line = report.sample(
            (at - start).as_secs_f64(),
            rss,
            shared.total_deliveries(),
            shared.total_errors() + counters.errors.load(Relaxed),
            counters.joined.load(Relaxed),
        );
        // Stdout carries the one JSON line with --json: samples go to stderr then.
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        if at >= end {
            break;
        }
        at = (at + every).min(end);
    }
    report.deliveries_at_end = shared.total_deliveries();
    let bound = end + CHURNER_GRACE;
    while let Ok(Some(done)) = timeout_at(bound.into(), churners.join_next()).await {
        if let Err(e) = done {
            counters.errors.fetch_add(1, Relaxed);
            report.note_stuck(format!("a churning member's task failed: {e}"));
        }
    }
    if !churners.is_empty() {
        counters.errors.fetch_add(churners.len() as u64, Relaxed);
        report.note_stuck(format!(
            "{} churning members still busy {} s after the end",
            churners.len(),
            CHURNER_GRACE.as_secs()
        ));
        churners.abort_all();
    }
    report.take_counters(&counters);
    report
}
