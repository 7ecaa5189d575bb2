//! `--mode never-read`: members that never read, and one member that sends
//! public lines flat out (issue 8).
//!
//! `--members` members join and never read a byte, with a small receive
//! buffer (`--nr-rcvbuf`). One more member, the sender, sends public lines
//! of `--nr-line` bytes as fast as the server takes them, with never more
//! than `--nr-window` bytes of its own lines in flight, and reads everything
//! it is sent: its own lines (checked in order), and the join and leave
//! notices. The server should cut the members that never read (each costs
//! it at most its queue limit until then) and never the sender. The run
//! reports the server's peak RSS (`VmHWM`, and the largest RSS sampled every
//! 50 ms), when the last never-reading member was cut, and the sender's
//! throughput.
//!
//! Phases: the sender joins; the never-reading members connect
//! (`--connect-concurrency` at a time) and join (the sender sees their join
//! notices); the sender sends for `--duration` seconds; its lines in flight
//! arrive (`--drain-timeout`).

mod report;

use crate::args::{Args, Proto};
use crate::linebuf::LineBuf;
use crate::procfs;
use crate::wait::{secs, wait_until};
use clap::Args as ClapArgs;
pub use report::NeverReadReport;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

/// The sender's read buffer.
const READ_BUF: usize = 256 * 1024;
/// How often the server's RSS is sampled during the run.
const SAMPLE: Duration = Duration::from_millis(50);

/// Flags of the never-read mode.
#[derive(ClapArgs, Debug, Clone)]
pub struct NeverReadArgs {
    /// Never-read: bytes of text per public line of the sender.
    #[arg(long, default_value_t = 1000)]
    pub nr_line: usize,
    /// Never-read: most bytes of the sender's own lines in flight.
    #[arg(long, default_value_t = 200_000)]
    pub nr_window: usize,
    /// Never-read: receive buffer of each never-reading member (SO_RCVBUF).
    #[arg(long, default_value_t = 4096)]
    pub nr_rcvbuf: u32,
}

impl NeverReadArgs {
    /// Checks the flags against each other.
    pub fn validate(&self, proto: Proto) -> Result<(), String> {
        if proto != Proto::Chat {
            return Err("--mode never-read speaks the chat protocol only".into());
        }
        if !(16..=4000).contains(&self.nr_line) {
            return Err("--nr-line must be between 16 and 4000".into());
        }
        if self.nr_window < self.nr_line + 64 {
            return Err("--nr-window must hold at least one line".into());
        }
        Ok(())
    }
}

/// What the sender's reader has seen, shared with the orchestrator.
#[derive(Default)]
struct Seen {
    /// Bytes of its own lines received.
    own_bytes: AtomicU64,
    own_lines: AtomicU64,
    joined: AtomicU64,
    left: AtomicU64,
    misordered: AtomicU64,
    /// The server closed the sender's connection (or a read failed).
    cut: AtomicBool,
    /// Nanoseconds since the start when the last awaited leave notice came.
    all_left_ns: AtomicU64,
    /// How many leave notices mean every never-reading member is out.
    awaited_left: AtomicU64,
    progress: Notify,
    error: Mutex<Option<String>>,
}

/// Runs the scenario and reports it.
pub async fn run(args: Args) -> Result<NeverReadReport, String> {
    let n = args.members;
    let nr = &args.never_read;
    let t0 = Instant::now();
    let mut report = NeverReadReport::new(&args);
    let server_before = match args.server_pid() {
        Some(pid) => Some(procfs::sample(Some(pid))?),
        None => None,
    };

    // The sender joins first, so that it sees every other join.
    let sender_name = format!("{}sender", args.name_prefix);
    let mut stream = TcpStream::connect(args.addr())
        .await
        .map_err(|e| format!("sender: connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut lb = LineBuf::new(READ_BUF);
    expect_line(&mut stream, &mut lb, b"NAME").await?;
    stream
        .write_all(format!("{sender_name}\n").as_bytes())
        .await
        .map_err(|e| format!("sender: write: {e}"))?;
    let joined = format!("{sender_name} has joined the chat.");
    expect_line(&mut stream, &mut lb, joined.as_bytes()).await?;
    let (read_half, mut write_half) = stream.into_split();
    let seen = Arc::new(Seen::default());
    seen.awaited_left.store(u64::MAX, Relaxed);
    let own_prefix = format!("{sender_name}: ").into_bytes();
    let reader = tokio::spawn(read_sender(read_half, lb, own_prefix, seen.clone(), t0));

    // The never-reading members: connect, send a name, never read.
    let limit = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut connects = JoinSet::new();
    for i in 0..n {
        let (addr, rcvbuf, limit) = (args.addr(), nr.nr_rcvbuf, limit.clone());
        let name = format!("{}{i}", args.name_prefix);
        connects.spawn(async move {
            let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
            never_reader(addr, rcvbuf, &name).await
        });
    }
    let mut held = Vec::with_capacity(n);
    let connect_deadline = Instant::now() + secs(args.connect_timeout);
    while let Ok(Some(done)) =
        tokio::time::timeout_at(connect_deadline.into(), connects.join_next()).await
    {
        match done {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => report.note_failure(e),
            Err(e) => report.note_failure(e.to_string()),
        }
    }
    connects.abort_all();
    let settle_deadline = Instant::now() + secs(args.settle_timeout);
    let connected = held.len() as u64;
    wait_until(settle_deadline, || seen.joined.load(Relaxed) >= connected).await;
    report.joined = seen.joined.load(Relaxed);
    report.connect_secs = t0.elapsed().as_secs_f64();
    // Every member that joined is to be cut (and any cut before now).
    seen.awaited_left.store(report.joined, Relaxed);
    let (rss_settled, _) = sample_rss(args.server_pid());
    report.server_rss_settled_kib = rss_settled;

    // Send flat out within the window, for --duration seconds.
    let run_start = Instant::now();
    let run_end = run_start + secs(args.duration);
    let line_len = sender_name.len() + 2 + nr.nr_line + 1;
    let mut seq: u64 = 0;
    let mut sent_bytes: u64 = 0;
    let mut max_rss = rss_settled;
    let mut next_sample = run_start;
    let mut burst = Vec::with_capacity(nr.nr_window + line_len);
    while Instant::now() < run_end && !seen.cut.load(Relaxed) {
        if Instant::now() >= next_sample {
            max_rss = max_rss.max(sample_rss(args.server_pid()).0);
            next_sample += SAMPLE;
        }
        let in_flight = sent_bytes - seen.own_bytes.load(Relaxed);
        let room = (nr.nr_window as u64).saturating_sub(in_flight);
        if room < line_len as u64 {
            let wake = seen.progress.notified();
            let _ = tokio::time::timeout(Duration::from_millis(5), wake).await;
            continue;
        }
        burst.clear();
        let mut lines = 0;
        while (lines + 1) * line_len <= room as usize {
            burst.extend_from_slice(payload(seq, nr.nr_line).as_bytes());
            burst.push(b'\n');
            seq += 1;
            lines += 1;
        }
        // In flight is counted as the lines come back: `<name>: <text>\n`.
        sent_bytes += (lines * line_len) as u64;
        if let Err(e) = write_half.write_all(&burst).await {
            report.note_failure(format!("sender: write: {e}"));
            break;
        }
    }
    report.run_secs = run_start.elapsed().as_secs_f64();
    report.sent_lines = seq;
    let drain_deadline = Instant::now() + secs(args.drain_timeout);
    wait_until(drain_deadline, || {
        seen.own_lines.load(Relaxed) >= seq || seen.cut.load(Relaxed)
    })
    .await;
    max_rss = max_rss.max(sample_rss(args.server_pid()).0);
    let (rss_end, peak) = sample_rss(args.server_pid());
    report.server_rss_end_kib = rss_end;
    report.server_rss_max_sampled_kib = max_rss;
    report.server_peak_rss_kib = peak;
    if let (Some(before), Some(pid)) = (server_before, args.server_pid()) {
        report.server_cpu_secs = procfs::sample(Some(pid))?.cpu_secs - before.cpu_secs;
        report.server_rss_before_kib = before.rss_kib;
    }
    report.received_lines = seen.own_lines.load(Relaxed);
    report.left = seen.left.load(Relaxed);
    report.misordered = seen.misordered.load(Relaxed);
    report.sender_cut = seen.cut.load(Relaxed);
    let all_left = seen.all_left_ns.load(Relaxed);
    if all_left > 0 {
        let run_start_ns = run_start.duration_since(t0).as_nanos() as u64;
        report.all_cut_secs = Some(all_left.saturating_sub(run_start_ns) as f64 / 1e9);
    }
    if let Ok(guard) = seen.error.lock() {
        if let Some(e) = guard.clone() {
            report.note_failure(e);
        }
    }
    report.loader_rss_kib = procfs::sample(None)?.rss_kib;
    drop(write_half);
    reader.abort();
    drop(held);
    Ok(report)
}

/// The text of the sender's line `seq`: its number, then filler.
fn payload(seq: u64, len: usize) -> String {
    let mut text = format!("{seq:016} ");
    text.extend(std::iter::repeat_n('x', len - text.len()));
    text
}

/// The server's RSS now and its peak (`VmHWM`), in KiB (0 without a pid).
fn sample_rss(pid: Option<u32>) -> (u64, u64) {
    let Some(pid) = pid else {
        return (0, 0);
    };
    procfs::sample(Some(pid)).map_or((0, 0), |s| (s.rss_kib, s.peak_rss_kib))
}

/// Reads lines until one equals `want`.
async fn expect_line(stream: &mut TcpStream, lb: &mut LineBuf, want: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(line) = lb.next_line() {
            if line == want {
                return Ok(());
            }
        }
        match tokio::time::timeout_at(deadline.into(), lb.fill(stream)).await {
            Ok(Ok(0)) => return Err("sender: the server closed the connection".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("sender: read: {e}")),
            Err(_) => {
                return Err(format!(
                    "sender: no {:?} within 10 s",
                    String::from_utf8_lossy(want)
                ))
            }
        }
    }
}

/// A member that never reads: a small receive buffer, its name, nothing
/// more.
async fn never_reader(
    addr: std::net::SocketAddr,
    rcvbuf: u32,
    name: &str,
) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_recv_buffer_size(rcvbuf)
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(format!("{name}\n").as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    Ok(stream)
}

/// Reads everything the sender is sent: its own lines (in order), join and
/// leave notices.
async fn read_sender(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut lb: LineBuf,
    own_prefix: Vec<u8>,
    seen: Arc<Seen>,
    t0: Instant,
) {
    let mut next: u64 = 0;
    loop {
        while let Some(line) = lb.next_line() {
            if let Some(text) = line.strip_prefix(&own_prefix[..]) {
                let seq = std::str::from_utf8(&text[..text.len().min(16)])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                if seq != Some(next) {
                    seen.misordered.fetch_add(1, Relaxed);
                }
                next += 1;
                seen.own_lines.fetch_add(1, Relaxed);
                seen.own_bytes.fetch_add((line.len() + 1) as u64, Relaxed);
            } else if line.ends_with(b" has joined the chat.") {
                seen.joined.fetch_add(1, Relaxed);
            } else if line.ends_with(b" has left the chat.") {
                let left = seen.left.fetch_add(1, Relaxed) + 1;
                if left == seen.awaited_left.load(Relaxed) {
                    seen.all_left_ns
                        .store(t0.elapsed().as_nanos() as u64, Relaxed);
                }
            }
        }
        seen.progress.notify_one();
        match lb.fill(&mut read).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                if let Ok(mut error) = seen.error.lock() {
                    error.get_or_insert_with(|| format!("sender: read: {e}"));
                }
                break;
            }
        }
    }
    seen.cut.store(true, Relaxed);
    seen.progress.notify_one();
}
