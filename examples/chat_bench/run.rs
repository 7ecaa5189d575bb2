//! The members' run, as the module docs of main.rs describe it: connect,
//! settle, run (public, private, idle or churn), drain, stop.

use crate::args::{Args, Mode, Proto};
use crate::churn::{self, Notices};
use crate::member;
use crate::order::OrderTrace;
use crate::procfs;
use crate::report::{ProcTrace, Report};
use crate::shared::{Phase, Shared};
use crate::stats::{self, MemberStats, Totals};
use crate::transport::Connector;
use crate::wait::{secs, wait_for_count, wait_until};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Delay between the go signal and the first message, so every sender starts together.
pub const START_DELAY: Duration = Duration::from_millis(20);

pub async fn run(args: Args) -> Result<Report, String> {
    let mut report = Report::new(&args);
    // Several --server-pid (the nodes of a room): their counters added up.
    let server_pids = args.server_pids.clone();
    let server_pid = server_pids.first().copied();
    let server_sample = || procfs::sample_all(&server_pids);
    let server_before = match server_pid {
        Some(_) => Some(server_sample()?),
        None => None,
    };
    let loader_before = procfs::sample(None)?;

    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let connector = Connector::new(&args)?;
    let shared = Arc::new(Shared::new(args, connector, phase_rx));
    let args = &shared.args;
    let n = args.members;

    // Connect: every member joins, at most --connect-concurrency at a time.
    let connect_start = Instant::now();
    let connect_deadline = connect_start + secs(args.connect_timeout);
    let stats: Vec<Arc<Mutex<MemberStats>>> = (0..n)
        .map(|_| {
            let mut st = MemberStats::new(args.senders);
            if args.mode == Mode::Churn {
                st.notices = Some(Notices::new(&args.name_prefix, true));
            }
            if args.check_order() {
                st.order = Some(OrderTrace::default());
            }
            Arc::new(Mutex::new(st))
        })
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
            args.addr(),
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
        if args.mode == Mode::Churn {
            let churn = churn::run(&shared, start, end).await;
            report.run_deliveries = churn.deliveries_at_end - before;
            report.churn = Some(churn);
        } else {
            tokio::time::sleep_until(end.into()).await;
            report.run_deliveries = shared.total_deliveries() - before;
        }
        report.run_secs = args.duration;
        // Senders stop at `end`; one stuck in a write gives up soon after.
        wait_until(end + Duration::from_secs(6), || {
            shared.senders.iter().all(|s| s.done.load(Acquire))
        })
        .await;
        let sent = shared.total_sent();
        let drain_start = Instant::now();
        // Public: every member still connected should get every message.
        // Private: every message once, at its target. Churn: every public
        // message, and the whispers to it.
        let expected: Vec<u64> = match args.mode {
            Mode::Public => vec![sent; n],
            Mode::Churn => (0..n).map(|m| shared.expected_for(m)).collect(),
            _ => Vec::new(),
        };
        let target = if expected.is_empty() {
            sent
        } else {
            expected.iter().sum()
        };
        wait_for_count(drain_start + secs(args.drain_timeout), target, || {
            if expected.is_empty() {
                return shared.total_deliveries();
            }
            shared
                .live
                .iter()
                .zip(&expected)
                .map(|(c, &e)| {
                    if c.closed.load(Relaxed) {
                        e
                    } else {
                        c.deliveries.load(Relaxed).min(e)
                    }
                })
                .sum()
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
        Mode::Churn => {
            let expected: Vec<u64> = (0..t.unique_per_member.len())
                .map(|m| shared.expected_for(m))
                .collect();
            let unique = t
                .unique_per_member
                .iter()
                .zip(&expected)
                .map(|(&u, &e)| u.min(e))
                .sum();
            (expected.iter().sum(), unique)
        }
        Mode::Idle | Mode::Storm | Mode::NeverRead => (0, 0),
    };
    if let Some(c) = &mut report.churn {
        c.bad_notices = t.bad_notices;
        c.first_bad_notice = t.first_bad_notice.clone();
    }
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
    report.cross_latency = t.cross_latency;
    report.order_violations = t.order_violations;
    report.first_order_violation = t.first_order_violation;
    // Churn: the churning members' joins are not the settle's join lines.
    if shared.args.proto == Proto::Chat && shared.args.mode != Mode::Churn {
        report.join_lines = t.joins;
    }
    report.leave_lines = t.leaves;
    report.lines = t.lines;
    report.reads = t.reads;
}
