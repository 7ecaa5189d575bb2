//! A room across servers when things go wrong, against a real nats-server
//! started by each test on 127.0.0.1: nodes are `tcp_server --nats`
//! processes, killed (`kill -9`), stopped (SIGTERM), cut off from NATS
//! (the whole of NATS frozen with SIGSTOP, or one node behind a proxy that
//! stops forwarding), and restarted; names raced on three nodes at once;
//! senders on every node flat out. What PROTOCOL.md ("One room across
//! servers") promises is checked on what members hear, with the moments
//! they heard it.
//!
//! Every wait is bounded. The only sleeps are an outage's own length and,
//! where a test must show that something does *not* happen (nobody
//! announced as gone after a short outage), the time it watches for it;
//! each says so.
#![cfg(feature = "nats")]

#[path = "cluster/checks.rs"]
mod checks;
#[path = "cluster/heard.rs"]
mod heard;
mod nats;
mod procs;
#[path = "cluster/proxy.rs"]
mod proxy;

#[path = "cluster/failures/deaths.rs"]
mod deaths;
#[path = "cluster/failures/outages.rs"]
mod outages;
#[path = "cluster/failures/room.rs"]
mod room;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chatcore::cluster::{ClusterRoom, LinkConfig, RoomName};
use checks::{
    assert_numbered_prefix, assert_one_order, assert_prefix, assert_said, count, joined, left,
    numbered, said_by,
};
use heard::{talk, talk_with, Heard, WAIT};
use nats::NatsServer;
use procs::ServerProc;
use proxy::NatsProxy;

/// The contract's bound on announcing a dead node's members.
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(10);

/// How long a node may be cut off from NATS before it gives up.
const GIVES_UP_AFTER: Duration = Duration::from_secs(5);

/// A `tcp_server --nats <url> --room <room> <extra>` node.
fn node(url: &str, room: &str, label: &str, extra: &[&str]) -> ServerProc {
    let mut args = vec!["--nats", url, "--room", room];
    args.extend_from_slice(extra);
    let mut proc = ServerProc::start(label, &args);
    if proc.addr.is_none() {
        let status = proc.wait_exit_within(procs::PROC_TIMEOUT);
        // Its error line may still be on its way when the exit is seen.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !proc.stderr().contains(" ERROR ") && Instant::now() < deadline {
            thread::park_timeout(Duration::from_millis(10));
        }
        panic!("{label} exited at start ({status}): {}", proc.stderr());
    }
    proc
}

/// Nodes `labels` of `room`, started at once.
fn nodes(url: &str, room: &str, labels: &[&str]) -> Vec<ServerProc> {
    procs::tcp_server_binary(); // built once, before any clock matters
    thread::scope(|s| {
        let started: Vec<_> = labels
            .iter()
            .map(|label| s.spawn(move || node(url, room, label, &[])))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a node starts"))
            .collect()
    })
}

/// Joins each `(node, name)` in turn; then every member reads up to the
/// last one's join notice (see [`sync_line`]), so all stand at the same
/// place in the room's order.
fn members(spec: &[(SocketAddr, &str)]) -> Vec<Heard> {
    let mut members: Vec<Heard> = spec
        .iter()
        .map(|(addr, name)| Heard::join(*addr, name).0)
        .collect();
    let sync = sync_line(spec);
    for member in &mut members {
        if member.when(&sync).is_none() {
            member.read_until(&sync);
        }
    }
    members
}

/// The line after which the members of [`members`] all heard the same.
fn sync_line(spec: &[(SocketAddr, &str)]) -> String {
    joined(spec[spec.len() - 1].1)
}

/// Every survivor reads until it has heard each of `names` leave (by
/// `deadline`).
fn hear_leaves(survivors: &mut [Heard], names: &[&str], deadline: Instant) {
    for member in survivors {
        for name in names {
            if member.when(&left(name)).is_none() {
                member.read_until_by(&left(name), deadline);
            }
        }
    }
}

/// `who` sends `END`; every one of `all` reads up to it. Returns what each
/// heard from `sync` to there: the sequences compared (a notice heard
/// twice would come before the end).
fn end_all(who: usize, all: &mut [Heard], sync: &str) -> Vec<Vec<String>> {
    all[who].send_line("END");
    let end = format!("{}: END", all[who].label);
    for member in all.iter_mut() {
        member.read_until(&end);
    }
    all.iter().map(|m| m.between(sync, &end)).collect()
}

/// Lines per burst of a talking member.
const BURST: usize = 20;

/// How many lines `m` heard after both c1's and c2's leaves (0 before).
fn after_both_leaves(m: &Heard) -> usize {
    after_leaves(m, &["c1", "c2"])
}

/// How many lines `m` heard after every one of `names` left (0 before).
fn after_leaves(m: &Heard, names: &[&str]) -> usize {
    let mut last = 0;
    for name in names {
        match m.log.iter().position(|l| l.text == left(name)) {
            Some(at) => last = last.max(at + 1),
            None => return 0,
        }
    }
    m.log.len() - last
}

/// Sleeps until `t` (for an outage's length, or a watch for something
/// that must not happen; never to wait for something).
fn sleep_until(t: Instant) {
    thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// The server's last line to its members at shutdown.
const SHUTTING_DOWN: &str = "Server is shutting down.";
