//! chat_bench: the load generator for chatcore's TCP server.
//!
//! It connects N members, lets S of them send stamped messages (public lines
//! or whispers, paced or flat out within a window), checks every delivery for
//! loss, duplication and order, and reports throughput, latency, and the
//! server's CPU time and memory. `--proto nats` runs the same scenario against
//! nats-server for comparison. It speaks only the wire protocol (it does not
//! use the chatcore library) and only ever connects to loopback addresses.
//!
//! Phases, each bounded in time: connect (every member joins), settle (chat:
//! every join announcement arrives), run (senders send, or members hold in
//! idle mode), drain (outstanding deliveries arrive), stop.
//!
//! Exit status: 0 when every member joined and nothing was lost, duplicated
//! or misordered; 1 otherwise; 2 on a setup error.

mod args;
mod linebuf;
mod member;
mod procfs;
mod proto;
mod report;
mod sender;
mod shared;
mod stats;

use args::{Args, Mode, Proto};
use clap::Parser;
use report::{ProcTrace, Report};
use shared::{Phase, Shared};
use stats::{MemberStats, Totals};
use std::process::ExitCode;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the orchestrator polls the live counters.
const POLL: Duration = Duration::from_millis(5);
/// How long a count may stand still before a wait for it gives up.
const STALL: Duration = Duration::from_secs(3);
/// Delay between the go signal and the first message, so every sender starts together.
const START_DELAY: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("chat_bench: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat_bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let json = args.json;
    match rt.block_on(run(args)) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            rt.shutdown_timeout(Duration::from_secs(1));
            ExitCode::from(if report.passed() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("chat_bench: {e}");
            rt.shutdown_timeout(Duration::from_secs(1));
            ExitCode::from(2)
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Sleeps in small steps until `done()` holds or `deadline` passes;
/// returns whether `done()` held.
async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Like [`wait_until`] for a count that should reach `target`, but also
/// gives up once the count has not moved for [`STALL`] (a member that was
/// dropped will never receive the rest).
async fn wait_for_count(deadline: Instant, target: u64, count: impl Fn() -> u64) -> bool {
    let mut last = count();
    let mut moved = Instant::now();
    wait_until(deadline, || {
        let now_count = count();
        if now_count != last {
            last = now_count;
            moved = Instant::now();
        }
        now_count >= target || moved.elapsed() >= STALL
    })
    .await;
    count() >= target
}

async fn run(args: Args) -> Result<Report, String> {
    let mut report = Report::new(&args);
    let server_pid = args.server_pid;
    let server_sample = || procfs::sample(server_pid);
    let server_before = match server_pid {
        Some(_) => Some(server_sample()?),
        None => None,
    };
    let loader_before = procfs::sample(None)?;

    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let shared = Arc::new(Shared::new(args, phase_rx));
    let args = &shared.args;
    let n = args.members;

    // Connect: every member joins, at most --connect-concurrency at a time.
    let connect_start = Instant::now();
    let connect_deadline = connect_start + secs(args.connect_timeout);
    let stats: Vec<Arc<Mutex<MemberStats>>> = (0..n)
        .map(|_| Arc::new(Mutex::new(MemberStats::new(args.senders))))
        .collect();
    let handles: Vec<JoinHandle<()>> = stats
        .iter()
        .enumerate()
        .map(|(i, st)| tokio::spawn(member::run(shared.clone(), i, connect_deadline, st.clone())))
        .collect();
    loop {
        let settled = shared.joined.load(Relaxed) + shared.failed.load(Relaxed);
        if settled >= n || Instant::now() >= connect_deadline {
            break;
        }
        tokio::select! {
            _ = shared.progress.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let joined = shared.joined.load(Relaxed);
    report.joined = joined;
    report.join_failures = n - joined;
    report.first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    let connect_start_ns = connect_start.duration_since(shared.t0).as_nanos() as u64;
    report.connect_secs = shared
        .last_join_ns
        .load(Relaxed)
        .saturating_sub(connect_start_ns) as f64
        / 1e9;
    if joined == 0 {
        let _ = phase_tx.send(Phase::Abort);
        stop_members(handles).await;
        return Err(format!(
            "no member could join {}: {}",
            args.addr,
            report.first_error.as_deref().unwrap_or("timed out")
        ));
    }

    // Settle: on chat every join is announced to every member already in
    // the room, so the i-th of J joins reaches J - i + 1 members.
    if args.proto == Proto::Chat {
        let j = joined as u64;
        report.join_lines_expected = j * (j + 1) / 2;
        let expected = report.join_lines_expected;
        wait_for_count(Instant::now() + secs(args.settle_timeout), expected, || {
            shared.total_joins()
        })
        .await;
        report.join_lines = shared.total_joins();
    }
    report.settle_secs = connect_start.elapsed().as_secs_f64();

    let server_connected = match server_pid {
        Some(_) => Some(server_sample()?),
        None => None,
    };
    let loader_connected = procfs::sample(None)?;

    // Run, then drain.
    if joined < n {
        let _ = phase_tx.send(Phase::Abort);
    } else if args.mode == Mode::Idle {
        let _ = phase_tx.send(Phase::Abort);
        tokio::time::sleep(secs(args.duration)).await;
        report.run_secs = args.duration;
    } else {
        let start = Instant::now() + START_DELAY;
        let end = start + secs(args.duration);
        let _ = phase_tx.send(Phase::Run { start, end });
        let before = shared.total_deliveries();
        tokio::time::sleep_until(end.into()).await;
        report.run_deliveries = shared.total_deliveries() - before;
        report.run_secs = args.duration;
        // Senders stop at `end`; one stuck in a write gives up soon after.
        wait_until(end + Duration::from_secs(6), || {
            shared.senders.iter().all(|s| s.done.load(Acquire))
        })
        .await;
        let sent = shared.total_sent();
        let drain_start = Instant::now();
        // Public: every member still connected should get every message.
        // Private: every message once, at its target.
        let public = args.mode == Mode::Public;
        let target = if public { sent * n as u64 } else { sent };
        wait_for_count(drain_start + secs(args.drain_timeout), target, || {
            if public {
                shared
                    .live
                    .iter()
                    .map(|c| {
                        if c.closed.load(Relaxed) {
                            sent
                        } else {
                            c.deliveries.load(Relaxed).min(sent)
                        }
                    })
                    .sum()
            } else {
                shared.total_deliveries()
            }
        })
        .await;
        report.drain_secs = drain_start.elapsed().as_secs_f64();
        report.sent = sent;
    }

    let server_after = match server_pid {
        Some(_) => Some(server_sample()?),
        None => None,
    };
    let loader_after = procfs::sample(None)?;

    // Stop: end every member task, then take what each saw.
    stop_members(handles).await;
    let members = stats
        .iter()
        .map(|m| std::mem::replace(&mut *stats::lock(m), MemberStats::new(0)))
        .collect();
    let totals = Totals::merge(members);
    fill_deliveries(&mut report, &shared, totals);

    if let (Some(before), Some(connected), Some(after)) =
        (server_before, server_connected, server_after)
    {
        report.server = Some(ProcTrace {
            before,
            connected,
            after,
        });
    }
    report.loader = ProcTrace {
        before: loader_before,
        connected: loader_connected,
        after: loader_after,
    };
    Ok(report)
}

/// Aborts the member tasks and waits until they are gone, so their stats
/// are final. Their connections close as the tasks drop them.
async fn stop_members(handles: Vec<JoinHandle<()>>) {
    for h in &handles {
        h.abort();
    }
    for h in handles {
        if let Err(e) = h.await {
            if e.is_panic() {
                eprintln!("chat_bench: a member task panicked: {e}");
            }
        }
    }
}

/// Fills the delivery figures and the loss check from the members' totals.
fn fill_deliveries(report: &mut Report, shared: &Shared, t: Totals) {
    let sent = report.sent;
    // Public: every joined member should get every message. Private: each
    // message exactly once, at its target.
    let (expected, unique) = match shared.args.mode {
        Mode::Public => (
            sent * t.joined as u64,
            t.unique_per_member.iter().map(|&u| u.min(sent)).sum(),
        ),
        Mode::Private => (sent, t.deliveries - t.dups),
        Mode::Idle => (0, 0),
    };
    report.expected = expected;
    report.deliveries = t.deliveries;
    report.lost = expected.saturating_sub(unique);
    report.dups = t.dups;
    report.misordered = t.misordered;
    report.disconnected = t.disconnected;
    report.first_disconnect = t.first_disconnect;
    report.other_lines = t.other;
    report.first_other = t.first_other;
    report.latency = t.latency;
    if shared.args.proto == Proto::Chat {
        report.join_lines = t.joins;
    }
    report.leave_lines = t.leaves;
    report.lines = t.lines;
    report.reads = t.reads;
}
