//! The churn's figures: RSS samples and their verdict, and what the
//! churning members did and saw.

use super::churner::Counters;
use super::ChurnArgs;
use crate::json::Json;
use crate::stats::lock;
use std::sync::atomic::Ordering::Relaxed;

/// One sample: seconds since the churn started, and the server's RSS.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub rss_kib: Option<u64>,
}

/// What the churn measured. The steady members' figures (deliveries, loss,
/// order) are in the main report.
#[derive(Debug, Default)]
pub struct ChurnReport {
    churners: usize,
    stay: (f64, f64),
    quit_share: f64,
    whisper_share: f64,
    warmup: f64,
    tolerance: f64,
    rss_check: bool,
    samples: Vec<Sample>,
    sample_error: Option<String>,
    /// Deliveries to the steady members when the churn ended.
    pub deliveries_at_end: u64,
    /// Stays that reached their own join notice, and how they ended.
    stays: u64,
    quits: u64,
    closes: u64,
    /// Payloads the churning members received.
    churn_deliveries: u64,
    /// Checks the churning members failed, and the first of them.
    churn_errors: u64,
    first_error: Option<String>,
    /// Notices the steady members found malformed or out of place.
    pub bad_notices: u64,
    pub first_bad_notice: Option<String>,
}

impl ChurnReport {
    pub fn new(c: &ChurnArgs) -> Self {
        ChurnReport {
            churners: c.churners,
            stay: (c.stay_min, c.stay_max),
            quit_share: c.quit_share,
            whisper_share: c.whisper_share,
            warmup: c.warmup,
            tolerance: c.rss_tolerance,
            rss_check: c.rss_check,
            ..ChurnReport::default()
        }
    }

    /// Records a sample and returns its progress line.
    pub fn sample(
        &mut self,
        t: f64,
        rss_kib: Option<u64>,
        deliveries: u64,
        errors: u64,
        stays: u64,
    ) -> String {
        self.samples.push(Sample { t, rss_kib });
        let rss = rss_kib.map_or("-".to_owned(), |k| format!("{k} KiB"));
        format!(
            "churn sample: t {t:.0} s, server rss {rss}, deliveries {deliveries}, \
             churn stays {stays}, errors {errors}"
        )
    }

    pub fn note_sample_error(&mut self, e: String) {
        self.sample_error.get_or_insert(e);
    }

    /// Notes churning members that did not stop in time (already counted as
    /// errors).
    pub fn note_stuck(&mut self, why: String) {
        self.first_error.get_or_insert(why);
    }

    pub fn take_counters(&mut self, c: &Counters) {
        self.stays = c.joined.load(Relaxed);
        self.quits = c.quits.load(Relaxed);
        self.closes = c.closes.load(Relaxed);
        self.churn_deliveries = c.deliveries.load(Relaxed);
        self.churn_errors = c.errors.load(Relaxed);
        if let Some(e) = lock(&c.first_error).clone() {
            self.first_error.get_or_insert(e);
        }
    }

    /// The baseline: the first sample with an RSS at least `--warmup` in.
    pub fn baseline(&self) -> Option<Sample> {
        self.samples
            .iter()
            .copied()
            .find(|s| s.t + 1e-6 >= self.warmup && s.rss_kib.is_some())
    }

    /// The largest growth of RSS over the baseline among the later samples,
    /// in percent (negative when it shrank); `None` without a later sample.
    pub fn max_growth_pct(&self) -> Option<f64> {
        let base = self.baseline()?;
        let base_kib = base.rss_kib? as f64;
        self.samples
            .iter()
            .filter(|s| s.t > base.t)
            .filter_map(|s| s.rss_kib)
            .map(|k| (k as f64 / base_kib.max(1.0) - 1.0) * 100.0)
            .reduce(f64::max)
    }

    /// Whether RSS stayed within the tolerance after warm-up; `None` when it
    /// could not be told.
    pub fn flat(&self) -> Option<bool> {
        let base = self.baseline()?;
        let base_kib = base.rss_kib? as f64;
        let max_kib = self
            .samples
            .iter()
            .filter(|s| s.t > base.t)
            .filter_map(|s| s.rss_kib)
            .max()? as f64;
        // In whole numbers, so that exactly the tolerance still passes.
        Some(max_kib * 100.0 <= base_kib * (100.0 + self.tolerance))
    }

    /// Checks the churn failed (the steady members' unexpected lines and
    /// disconnects are counted in the main report).
    pub fn errors(&self) -> u64 {
        self.churn_errors + self.bad_notices
    }

    /// Whether the churn's own checks passed: no error, and a flat RSS when
    /// `--rss-check` asks for it.
    pub fn passed(&self) -> bool {
        self.errors() == 0 && (!self.rss_check || self.flat() == Some(true))
    }

    fn flat_text(&self) -> String {
        match (self.flat(), self.max_growth_pct(), self.baseline()) {
            (Some(flat), Some(g), Some(b)) => format!(
                "{} (max {g:+.1}% over the baseline {} KiB at {:.0} s; tolerance {}%)",
                if flat { "yes" } else { "NO" },
                b.rss_kib.unwrap_or(0),
                b.t,
                self.tolerance
            ),
            _ => format!(
                "not measured (needs --server-pid and samples after the {} s warm-up)",
                self.warmup
            ),
        }
    }

    /// The churn's rows of the table.
    pub fn rows(&self, row: &mut dyn FnMut(&str, String)) {
        row(
            "churn",
            format!(
                "{} members, stays {:.2} to {:.2} s, {:.0}% leave by QUIT, {:.0}% whispers",
                self.churners,
                self.stay.0,
                self.stay.1,
                self.quit_share * 100.0,
                self.whisper_share * 100.0
            ),
        );
        row(
            "churn stays",
            format!(
                "{} joined ({} left by QUIT, {} by closing), {} payloads read",
                self.stays, self.quits, self.closes, self.churn_deliveries
            ),
        );
        row(
            "churn errors",
            format!(
                "{} (churning members {}, malformed or misplaced notices {})",
                self.errors(),
                self.churn_errors,
                self.bad_notices
            ),
        );
        if let Some(e) = &self.first_error {
            row("first churn error", e.clone());
        }
        if let Some(e) = &self.first_bad_notice {
            row("first bad notice", e.clone());
        }
        let rss: Vec<String> = self
            .samples
            .iter()
            .map(|s| s.rss_kib.map_or("-".into(), |k| k.to_string()))
            .collect();
        row("server rss samples KiB", rss.join(" "));
        if let Some(e) = &self.sample_error {
            row("rss sample error", e.clone());
        }
        row("rss flat after warm-up", self.flat_text());
    }

    /// The churn's fields of the JSON line.
    pub fn json_fields(&self, j: &mut Json) {
        j.num("churners", self.churners as f64);
        j.num("churn_stays", self.stays as f64);
        j.num("churn_quits", self.quits as f64);
        j.num("churn_closes", self.closes as f64);
        j.num("churn_deliveries", self.churn_deliveries as f64);
        j.num("churn_errors", self.errors() as f64);
        j.opt_str("first_churn_error", self.first_error.as_deref());
        j.num("bad_notices", self.bad_notices as f64);
        j.opt_str("first_bad_notice", self.first_bad_notice.as_deref());
        let rss: Vec<String> = self
            .samples
            .iter()
            .map(|s| s.rss_kib.map_or("null".into(), |k| k.to_string()))
            .collect();
        j.raw("rss_samples_kib", &format!("[{}]", rss.join(",")));
        j.num("warmup_secs", self.warmup);
        match self.baseline().and_then(|b| b.rss_kib) {
            Some(k) => j.num("rss_baseline_kib", k as f64),
            None => j.raw("rss_baseline_kib", "null"),
        }
        match self.max_growth_pct() {
            Some(g) => j.num("rss_max_growth_pct", g),
            None => j.raw("rss_max_growth_pct", "null"),
        }
        match self.flat() {
            Some(f) => j.raw("rss_flat", if f { "true" } else { "false" }),
            None => j.raw("rss_flat", "null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(warmup: f64, rss: &[u64]) -> ChurnReport {
        let mut r = ChurnReport {
            warmup,
            tolerance: 10.0,
            rss_check: true,
            ..ChurnReport::default()
        };
        for (i, &k) in rss.iter().enumerate() {
            r.sample(i as f64 * 10.0, Some(k), 0, 0, 0);
        }
        r
    }

    #[test]
    fn rss_is_flat_within_the_tolerance_after_the_warm_up() {
        // The warm-up's growth does not count; 1100 is exactly +10%.
        let r = report(20.0, &[100, 500, 1000, 1100, 950]);
        assert_eq!(r.baseline().and_then(|b| b.rss_kib), Some(1000));
        assert_eq!(r.flat(), Some(true));
        assert!(r.passed());
        let r = report(20.0, &[100, 500, 1000, 1050, 1101]);
        assert_eq!(r.flat(), Some(false));
        assert!(!r.passed());
    }

    #[test]
    fn rss_not_measured_fails_only_when_checked() {
        let mut r = report(60.0, &[100, 200]);
        assert_eq!(r.flat(), None);
        assert!(!r.passed());
        r.rss_check = false;
        assert!(r.passed());
        r.bad_notices = 1;
        assert!(!r.passed());
    }
}
