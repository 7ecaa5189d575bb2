//! CPU time and resident memory of a process, read from /proc.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

/// One reading of a process's counters.
#[derive(Copy, Clone, Debug, Default)]
pub struct ProcSample {
    /// User plus system CPU time, in seconds.
    pub cpu_secs: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 if unknown).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Reads the counters of `pid`, or of this process when `pid` is `None`.
pub fn sample(pid: Option<u32>) -> Result<ProcSample, String> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = fs::read_to_string(format!("{dir}/stat")).map_err(|e| format!("{dir}/stat: {e}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime field 14 and stime field 15.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("{dir}/stat: unexpected format"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{dir}/stat: unexpected format"))
    };
    let cpu_ticks = tick(14 - 3)? + tick(15 - 3)?;
    let status =
        fs::read_to_string(format!("{dir}/status")).map_err(|e| format!("{dir}/status: {e}"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{dir}/status: no VmRSS"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(rss_kib);
    Ok(ProcSample {
        cpu_secs: cpu_ticks as f64 / clock_ticks(),
        rss_kib,
        peak_rss_kib,
    })
}

/// The counters of every process in `pids`, added up (peak RSS: the sum of
/// each one's peak).
pub fn sample_all(pids: &[u32]) -> Result<ProcSample, String> {
    let mut total = ProcSample::default();
    for &pid in pids {
        let s = sample(Some(pid))?;
        total.cpu_secs += s.cpu_secs;
        total.rss_kib += s.rss_kib;
        total.peak_rss_kib += s.peak_rss_kib;
    }
    Ok(total)
}
