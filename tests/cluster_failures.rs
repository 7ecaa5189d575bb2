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

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use checks::{
    assert_numbered_prefix, assert_one_order, assert_prefix, assert_said, count, joined, left,
    numbered,
};
use heard::{flat_out, talk, Heard, WAIT};
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
    let proc = ServerProc::start(label, &args);
    proc.addr(); // fails the test if it exited at start
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

/// `kill -9` of node C while every member of every node sends flat out:
/// C's members' leaves reach every other member once, within 10 s of the
/// kill, and their names are free; the survivors, who keep sending across
/// the kill and the announcement, hear one and the same sequence, with
/// every line of theirs once and in order, C's lines a gapless prefix of
/// what C's members sent, and everything C's members heard before the kill
/// (so accepted) in it.
#[test]
fn a_node_killed_mid_burst() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let n = nodes(&nats.url(), "killed", &["A", "B", "C"]);
    let names = ["a1", "a2", "b1", "b2", "c1", "c2"];
    let spec: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (n[i / 2].addr(), *name))
        .collect();
    let sync = sync_line(&spec);
    let bound = Instant::now() + 3 * WAIT;
    let (progress, c1_progress) = mpsc::channel();
    let mut talkers = Vec::new();
    for (i, member) in members(&spec).into_iter().enumerate() {
        let progress = (i == 4).then(|| progress.clone());
        let talker = if i < 4 {
            // Survivors talk until they have heard both leaves, and then
            // some more.
            talk(member, BURST, bound, |m| after_both_leaves(m) > 100, None)
        } else {
            // C's members talk until C dies.
            talk(member, BURST, bound, |_| false, progress)
        };
        talkers.push(talker);
    }
    // c1's own lines are coming back: the burst is under way, and what C's
    // members heard up to now was accepted.
    while c1_progress.recv_timeout(WAIT).expect("c1's lines come back") < 150 {}
    n[2].signal("KILL");
    let killed = Instant::now();
    let (mut m, sent): (Vec<Heard>, Vec<usize>) = talkers
        .into_iter()
        .map(|t| t.join().expect("a member's thread"))
        .unzip();
    // The names are free again, on the other nodes.
    let (new_c1, _) = Heard::join(n[0].addr(), "c1");
    let (new_c2, _) = Heard::join(n[1].addr(), "C2");
    let seqs = end_all(0, &mut m[..4], &sync);

    let labelled: Vec<(&str, &[String])> =
        names.iter().zip(&seqs).map(|(n, s)| (*n, &s[..])).collect();
    assert_one_order(&labelled);
    let seq = &seqs[0];
    for (name, sent) in names[..4].iter().zip(&sent) {
        assert_said(seq, name, &numbered(name, 0..*sent));
    }
    let mut kept = Vec::new();
    for (c, name) in m[4..].iter().zip(["c1", "c2"]) {
        kept.push(assert_numbered_prefix(seq, name));
        // Everything C's members heard before the kill was accepted: it is
        // where the room's order begins.
        assert_prefix(name, &c.since(&sync), seq);
        let gone = seq.iter().position(|l| *l == left(name)).expect("its leave");
        assert_eq!(count(seq, &left(name)), 1, "{name}'s leave notices");
        // The survivors' lines went on around it.
        let theirs = |l: &String| !l.starts_with("c1: ") && !l.starts_with("c2: ");
        assert!(seq[..gone].iter().any(theirs) && seq[gone..].iter().any(theirs));
    }
    let mut slowest = Duration::ZERO;
    for member in &m[..4] {
        for name in ["c1", "c2"] {
            let at = member.when(&left(name)).expect("heard");
            slowest = slowest.max(at - killed);
        }
    }
    let freed = [&new_c1, &new_c2]
        .iter()
        .map(|c| c.log[1].at - killed)
        .max()
        .expect("two");
    eprintln!(
        "kill -9: leaves heard {slowest:?} after the kill, names claimed {freed:?} after it; \
         C's members wrote {:?} lines, {kept:?} kept; {} lines in all",
        &sent[4..],
        seq.len()
    );
    assert!(slowest < ANNOUNCED_WITHIN, "leaves heard {slowest:?} after the kill");
    assert!(freed < ANNOUNCED_WITHIN, "names free {freed:?} after the kill");
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

/// SIGTERM of node C while c1 (on C) and a1 (on A) send flat out: C's
/// members get every line of theirs that came back, then `Server is
/// shutting down.` (and no leave notice); C exits with status 0; the
/// others hear each of C's members leave once, within 10 s, in one order,
/// and the names are free.
#[test]
fn a_node_stopped_with_sigterm() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut n = nodes(&nats.url(), "termed", &["A", "B", "C"]);
    let names = ["a1", "b1", "c1", "c2", "c3"];
    let at = [0, 1, 2, 2, 2];
    let spec: Vec<_> = names
        .iter()
        .zip(at)
        .map(|(name, i)| (n[i].addr(), *name))
        .collect();
    let sync = sync_line(&spec);
    let bound = Instant::now() + 3 * WAIT;
    let mut m = members(&spec);
    let c1 = m.remove(2);
    let a1 = m.remove(0);
    let (progress, c1_progress) = mpsc::channel();
    let a1 = talk(
        a1,
        BURST,
        bound,
        |m| after_leaves(m, &["c1", "c2", "c3"]) > 100,
        None,
    );
    let c1 = talk(c1, BURST, bound, |_| false, Some(progress));
    while c1_progress.recv_timeout(WAIT).expect("c1's lines come back") < 100 {}
    n[2].signal("TERM");
    let termed = Instant::now();
    let (a1, a1_sent) = a1.join().expect("a1's thread");
    let (c1, _) = c1.join().expect("c1's thread");
    m.insert(0, a1);
    m.insert(2, c1);
    for c in &mut m[2..] {
        c.read_to_end_by(termed + WAIT);
    }
    n[2].expect_exit(0);
    hear_leaves(&mut m[..2], &["c1", "c2", "c3"], termed + WAIT);
    let (new_c1, _) = Heard::join(n[1].addr(), "C1");
    let (new_c3, _) = Heard::join(n[0].addr(), "c3");
    let seqs = end_all(1, &mut m[..2], &sync);

    assert_one_order(&[("a1", &seqs[0]), ("b1", &seqs[1])]);
    let seq = &seqs[0];
    assert_said(seq, "a1", &numbered("a1", 0..a1_sent));
    let kept = assert_numbered_prefix(seq, "c1");
    for (c, name) in m[2..].iter().zip(["c1", "c2", "c3"]) {
        let mut heard = c.since(&sync);
        assert_eq!(heard.pop().as_deref(), Some(SHUTTING_DOWN), "{name}'s last line");
        assert!(!heard.iter().any(|l| l.ends_with(" has left the chat.")));
        // Every line that came back to C's members is in the room.
        assert_prefix(name, &heard, seq);
        assert_eq!(count(seq, &left(name)), 1, "{name}'s leave notices");
        assert_eq!(count(&seqs[1], &left(name)), 1, "{name}'s leave notices");
    }
    let c1_heard = crate::checks::said_by(&m[2].since(&sync), "c1").len();
    let slowest = m[..2]
        .iter()
        .flat_map(|s| ["c1", "c2", "c3"].map(|name| s.when(&left(name)).expect("heard")))
        .max()
        .expect("leaves")
        - termed;
    eprintln!(
        "SIGTERM: leaves heard {slowest:?} after it; c1 heard {c1_heard} of its lines back, \
         {kept} are in the room; names claimed {:?} after it",
        new_c1.log[1].at.max(new_c3.log[1].at) - termed
    );
    assert!(kept >= c1_heard);
    assert!(slowest < ANNOUNCED_WITHIN, "leaves heard {slowest:?} after SIGTERM");
}

/// How a short outage is made.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// nats-server frozen (SIGSTOP) for 3 s, then continued.
    Paused,
    /// nats-server stopped (SIGTERM) and started again on the same port and
    /// store, about 2 s later.
    Restarted,
}

/// Lines sent during a short outage wait for its end and are then heard by
/// everyone, once each, in one order; nobody is announced as gone and no
/// node stops.
fn short_outage(how: Outage, room: &str) {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let mut n = nodes(&nats.url(), room, &["A", "B", "C"]);
    let names = ["a1", "b1", "c1"];
    let spec: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (n[i].addr(), *name))
        .collect();
    let mut m = members(&spec);
    m[0].send_line("before");
    for member in &mut m {
        member.read_until("a1: before");
    }
    let cut = Instant::now();
    match how {
        Outage::Paused => nats.pause(),
        Outage::Restarted => nats.stop(),
    }
    const EACH: usize = 20;
    for i in 0..EACH {
        for (member, name) in m.iter_mut().zip(names) {
            member.send_line(&format!("{name} {i}"));
        }
        if i == EACH / 2 {
            m[2].send_line("\\w a1 in the dark");
        }
    }
    // The outage itself lasts this long: a sleep.
    let ending = match how {
        Outage::Paused => {
            sleep_until(cut + Duration::from_secs(3));
            let ending = Instant::now();
            nats.resume();
            ending
        }
        Outage::Restarted => {
            sleep_until(cut + Duration::from_secs(2));
            let ending = Instant::now();
            nats.restart();
            ending
        }
    };
    let back = Instant::now();
    for member in &mut m {
        for name in names {
            let last = format!("{name}: {name} {}", EACH - 1);
            if member.when(&last).is_none() {
                member.read_until_by(&last, back + WAIT);
            }
        }
    }
    let delivered = m
        .iter()
        .flat_map(|s| names.map(|name| s.when(&format!("{name}: {name} {}", EACH - 1))))
        .flatten()
        .max()
        .expect("heard");
    // Nobody may be announced as gone: watch for it up to 10 s after the
    // cut began, the contract's bound for announcing a node that died then
    // (the watch is a sleep: what is watched for must not happen).
    sleep_until(cut + ANNOUNCED_WITHIN);
    let seqs = end_all(1, &mut m, "a1: before");
    eprintln!(
        "{how:?}: NATS back {:?} after the cut; lines sent during it heard {:?} after",
        back - cut,
        delivered - back
    );
    for (label, seq) in names.iter().zip(&seqs) {
        assert!(
            !seq.iter()
                .any(|l| l.ends_with(" has left the chat.") || l == SHUTTING_DOWN),
            "{label} heard someone leave: {seq:?}"
        );
    }
    for node in &mut n {
        assert!(node.running(), "{} stopped: {}", node.label, node.stderr());
    }
    // Public lines: one order, each sender's once and in order, none heard
    // before the outage ended.
    let public: Vec<Vec<String>> = seqs
        .iter()
        .map(|s| s.iter().filter(|l| !l.starts_with("priv(")).cloned().collect())
        .collect();
    assert_one_order(&[("a1", &public[0]), ("b1", &public[1]), ("c1", &public[2])]);
    for name in names {
        assert_said(&public[0], name, &numbered(name, 0..EACH));
    }
    for member in &m {
        for line in member.log.iter().filter(|l| l.text.ends_with(" 0")) {
            assert!(line.at >= ending, "{}: {:?} heard during the outage", member.label, line.text);
        }
    }
    // The whisper, once, in its place among c1's lines.
    let a1 = &seqs[0];
    let w = a1.iter().position(|l| l == "priv(c1): in the dark").expect("the whisper");
    assert_eq!(count(a1, "priv(c1): in the dark"), 1);
    let before = crate::checks::said_by(&a1[..w], "c1");
    assert_eq!(before.last().copied(), Some(format!("c1 {}", EACH / 2).as_str()));
}

#[test]
fn nats_paused_for_3_s() {
    short_outage(Outage::Paused, "paused");
}

#[test]
fn nats_restarted_within_3_s() {
    short_outage(Outage::Restarted, "restarted");
}
