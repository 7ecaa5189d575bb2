//! chat_bench: the load generator for chatcore's server.
//!
//! It connects N members, lets S of them send stamped messages (public lines
//! or whispers, paced or flat out within a window), checks every delivery for
//! loss, duplication and order, and reports throughput, latency, and the
//! server's CPU time and memory. `--proto nats` runs the same scenario against
//! nats-server for comparison. It speaks only the wire protocol (it does not
//! use the chatcore library) and only ever connects to loopback addresses.
//!
//! `--transport tls|ws|wss` speaks the chat protocol over TLS, WebSocket or
//! WebSocket over TLS instead of plain TCP, in every mode; see [`transport`].
//!
//! `--addr` given several times (the nodes of one room across servers,
//! `tcp_server --nats`) spreads the members over them round robin, senders
//! included. Latencies across nodes (the receiver on another node than the
//! sender: public lines, or whispers in private mode) are also reported
//! apart, and in public mode every member's whole sequence of payloads must
//! be the same as every other's, not only each sender's in order; see
//! [`order`].
//!
//! Phases, each bounded in time: connect (every member joins), settle (chat:
//! every join announcement arrives), run (senders send, or members hold in
//! idle mode), drain (outstanding deliveries arrive), stop.
//!
//! Two modes have their own shape:
//! - `--mode storm` (a connect storm) connects clients in bursts of
//!   `--burst` at once and times the server's first reply; see [`storm`].
//! - `--mode never-read` (issue 8) joins members that never read and one
//!   sender flat out, and reports the server's peak RSS; see [`never_read`].
//! - `--mode churn` (a soak) runs steady members that chat while others
//!   join and leave continuously, and samples the server's RSS; see [`churn`].
//!
//! Exit status: 0 when every member joined and nothing was lost, duplicated
//! or misordered (nor seen in another order by another member) (storm: every client got its reply; churn: also no error,
//! and with `--rss-check` an RSS that stayed flat); 1 otherwise; 2 on a
//! setup error.

mod args;
mod churn;
mod json;
mod linebuf;
mod member;
mod never_read;
mod order;
mod procfs;
mod proto;
mod report;
mod run;
mod sender;
mod shared;
mod stats;
mod storm;
mod transport;
mod wait;

use args::{Args, Mode};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// What a finished run hands back to be printed and judged.
pub trait Outcome {
    /// The figures as a table, for people.
    fn table(&self) -> String;
    /// The figures as one JSON line, for scripts.
    fn json(&self) -> String;
    /// Whether every check passed.
    fn passed(&self) -> bool;
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("chat_bench: {e}");
        return ExitCode::from(2);
    }
    // 10,000 members need more descriptors than the usual soft limit of
    // 1024: raise it to the hard limit (the run fails cleanly if still short).
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat_bench: cannot raise the open-file limit: {e}");
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
    let result: Result<Box<dyn Outcome>, String> = match args.mode {
        Mode::Storm => rt
            .block_on(storm::run(args))
            .map(|r| Box::new(r) as Box<dyn Outcome>),
        Mode::NeverRead => rt
            .block_on(never_read::run(args))
            .map(|r| Box::new(r) as Box<dyn Outcome>),
        _ => rt
            .block_on(run::run(args))
            .map(|r| Box::new(r) as Box<dyn Outcome>),
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(outcome) => {
            if json {
                println!("{}", outcome.json());
            } else {
                print!("{}", outcome.table());
            }
            ExitCode::from(if outcome.passed() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("chat_bench: {e}");
            ExitCode::from(2)
        }
    }
}
