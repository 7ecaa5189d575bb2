//! The room's promises under pressure: history that outlives every node,
//! one name raced on three nodes, senders on three nodes flat out, nodes
//! starting at once on a new room.

use super::*;

/// `--history 3` outlives every node, and a restart of NATS: two nodes
/// (lines and a whisper from members of both) end, one with SIGTERM, one
/// with `kill -9`; a newcomer on a new node gets the room's last three
/// public lines, in the room's order, right after its welcome and before
/// its join line; and again on another new node after nats-server itself
/// was stopped and started on the same store.
#[test]
fn history_outlives_a_restart_of_every_node() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    procs::tcp_server_binary();
    let history = ["--history", "3"];
    let mut a = node(&url, "lasting", "A", &history);
    let mut b = node(&url, "lasting", "B", &history);
    let spec = [(a.addr(), "a1"), (b.addr(), "b1")];
    let mut m = members(&spec);
    for (k, text) in [
        (0, "one"),
        (1, "two"),
        (0, "\\w b1 never replayed"),
        (0, "three"),
    ] {
        m[k].send_line(text);
    }
    for (k, text) in [(1, "four"), (0, "five")] {
        m[k].send_line(text);
    }
    m[1].read_until("priv(a1): never replayed");
    for member in &mut m {
        member.read_until("a1: five");
    }
    // The room's order of its public lines, as a1 heard them.
    let order: Vec<String> = m[0].since(&joined("b1"));
    assert_eq!(order.len(), 5, "{order:?}");
    let public_b1: Vec<String> = m[1]
        .since(&joined("b1"))
        .into_iter()
        .filter(|l| !l.starts_with("priv("))
        .collect();
    assert_eq!(public_b1, order, "b1 heard another order");
    a.signal("TERM");
    b.signal("KILL");
    a.expect_exit(0);
    b.wait_exit_within(procs::PROC_TIMEOUT);
    let last_three = order[2..].to_vec();

    let mut c = node(&url, "lasting", "C", &history);
    let (_newcomer, replayed) = Heard::join(c.addr(), "n1");
    assert_eq!(
        replayed, last_three,
        "the history on a node started after all had ended"
    );
    c.signal("TERM");
    c.expect_exit(0);

    nats.stop();
    nats.restart();
    let d = node(&url, "lasting", "D", &history);
    let (_late, replayed) = Heard::join(d.addr(), "n2");
    assert_eq!(replayed, last_three, "the history after NATS restarted");
}

/// The same name asked for on three nodes at the very same moment (in
/// three spellings), 30 times: each time exactly one wins, every other
/// gets `Name '<name>' is already taken.` and `NAME` again, and the room
/// hears exactly the winner's join; at the end `\list`, on any node, holds
/// each winner once.
#[test]
fn the_same_name_on_three_nodes_at_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let n = nodes(&nats.url(), "race", &["A", "B", "C"]);
    let (mut watcher, _) = Heard::join(n[0].addr(), "watcher");
    let mut winners = Vec::new();
    let mut won_on = [0; 3];
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        let asked = [
            format!("Racer{round}"),
            format!("RACER{round}"),
            format!("racer{round}"),
        ];
        let mut racers: Vec<Heard> = n
            .iter()
            .zip(&asked)
            .map(|(node, name)| {
                let mut racer = Heard::connect(node.addr(), name);
                racer.expect("NAME");
                racer
            })
            .collect();
        // All three names leave at once.
        let start = Arc::new(Barrier::new(racers.len()));
        let sends: Vec<_> = racers
            .iter()
            .zip(&asked)
            .map(|(racer, name)| {
                let (mut writer, start) = (racer.writer(), start.clone());
                let line = format!("{name}\n");
                thread::spawn(move || {
                    use std::io::Write;
                    start.wait();
                    writer.write_all(line.as_bytes()).expect("send the name");
                })
            })
            .collect();
        for send in sends {
            send.join().expect("a racer's send");
        }
        let mut won = Vec::new();
        for (i, (racer, name)) in racers.iter_mut().zip(&asked).enumerate() {
            let answer = racer.line().text;
            if answer == format!("Welcome to the chat, {name}!") {
                racer.read_until(&joined(name));
                won.push(i);
            } else {
                assert_eq!(
                    answer,
                    format!("Name '{name}' is already taken."),
                    "round {round}"
                );
                racer.expect("NAME");
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?} won");
        let winner = &asked[won[0]];
        won_on[won[0]] += 1;
        // The room heard that join and no other.
        watcher.expect(&joined(winner));
        winners.push((racers.swap_remove(won[0]), winner.clone()));
    }
    let (mut last, _) = Heard::join(n[2].addr(), "last");
    watcher.expect(&joined("last"));
    last.send_line("\\list");
    let names: Vec<&str> = std::iter::once("watcher")
        .chain(winners.iter().map(|(_, name)| name.as_str()))
        .chain(std::iter::once("last"))
        .collect();
    last.expect(&format!(
        "Users online ({}): {}",
        names.len(),
        names.join(", ")
    ));
    eprintln!("names raced {ROUNDS} times on three nodes: won on A, B, C {won_on:?}");
}

/// Senders on three nodes flat out (bursts of 50 lines, each written at
/// once as soon as the last came back), whispers among their public lines,
/// and a member who joins and quits in the middle: every member hears one
/// and the same sequence (whispers aside), each sender's lines once and in
/// order, each whisper once, in its place among its sender's public lines,
/// and the late member a gapless slice of it from its own join on.
#[test]
fn senders_on_three_nodes_flat_out() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let n = nodes(&nats.url(), "flat", &["A", "B", "C"]);
    let names = ["s1", "s2", "s3"];
    let spec: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (n[i].addr(), *name))
        .collect();
    let sync = sync_line(&spec);
    let bound = Instant::now() + 3 * WAIT;
    let (progress, s1_progress) = mpsc::channel();
    // s1 whispers to s2, s2 to s3, s3 to s1: every tenth line. They talk
    // until they have heard the late member leave, and then some more.
    let talkers: Vec<_> = members(&spec)
        .into_iter()
        .enumerate()
        .map(|(k, member)| {
            let (me, to) = (names[k], names[(k + 1) % 3]);
            let line = move |i: usize| {
                if i % 10 == 5 {
                    format!("\\w {to} {me} {i}")
                } else {
                    format!("{me} {i}")
                }
            };
            let done = |m: &Heard| after_leaves(m, &["late"]) > 300;
            talk_with(
                member,
                50,
                bound,
                line,
                done,
                (k == 0).then(|| progress.clone()),
            )
        })
        .collect();
    // A member joins mid-burst, on B, and quits once it has heard some.
    while s1_progress
        .recv_timeout(WAIT)
        .expect("s1's lines come back")
        < 300
    {}
    let (mut late, _) = Heard::join(n[1].addr(), "late");
    for _ in 0..300 {
        late.line();
    }
    late.send_line("QUIT");
    late.read_to_end_by(Instant::now() + WAIT);
    let late_heard = late.since(&joined("late"));
    let (mut m, sent): (Vec<Heard>, Vec<usize>) = talkers
        .into_iter()
        .map(|t| t.join().expect("a sender"))
        .unzip();
    let seqs = end_all(0, &mut m, &sync);
    let public: Vec<Vec<String>> = seqs
        .iter()
        .map(|s| {
            s.iter()
                .filter(|l| !l.starts_with("priv("))
                .cloned()
                .collect()
        })
        .collect();
    assert_one_order(&[("s1", &public[0]), ("s2", &public[1]), ("s3", &public[2])]);
    let room = &public[0];
    for (k, name) in names.iter().enumerate() {
        let want: Vec<String> = (0..sent[k])
            .filter(|i| i % 10 != 5)
            .map(|i| format!("{name} {i}"))
            .collect();
        assert_said(room, name, &want);
        // Its whispers, at the next sender: once each, in order, each
        // right after its own line before it among this sender's lines.
        let to = &seqs[(k + 1) % 3];
        let mut expected_index = 5;
        let mut last_public: Option<usize> = None;
        for line in to {
            if let Some(text) = line.strip_prefix(&format!("priv({name}): ")) {
                assert_eq!(
                    text,
                    format!("{name} {expected_index}"),
                    "{name}'s whispers"
                );
                assert_eq!(
                    last_public,
                    Some(expected_index - 1),
                    "{name}'s whisper's place"
                );
                expected_index += 10;
            } else if let Some(text) = line.strip_prefix(&format!("{name}: ")) {
                last_public = text.rsplit(' ').next().and_then(|i| i.parse().ok());
            }
        }
        assert_eq!(expected_index, sent[k] + 5, "{name}'s whispers all arrived");
    }
    // The late member: its join, once, in the room's order, then a gapless
    // slice of it; its leave once.
    let at = room
        .iter()
        .position(|l| *l == joined("late"))
        .expect("its join");
    assert_eq!(count(room, &joined("late")), 1);
    assert_eq!(count(room, &left("late")), 1);
    assert!(late_heard.len() >= 300);
    assert_prefix("late", &late_heard, &room[at + 1..]);
    eprintln!(
        "three senders flat out: {sent:?} lines sent, {} heard by each",
        seqs[0].len()
    );
}

/// Nodes started at the same moment on a room nobody has used yet all
/// join it. (Regression: all of them found no stream and made one; those
/// that lost that race were told that their stream's subjects overlap the
/// winner's, and failed to start.) In process, six nodes at once on each
/// of thirty new rooms.
#[test]
fn nodes_starting_at_once_on_a_new_room() {
    let _ = env_logger::builder().is_test(true).try_init();
    let Some(nats) = NatsServer::start() else {
        return;
    };
    for round in 0..30 {
        let room = RoomName::new(&format!("new{round}")).expect("a room name");
        let start = Arc::new(Barrier::new(6));
        let nodes: Vec<_> = (0..6)
            .map(|_| {
                let config = LinkConfig::new(nats.url(), room.clone());
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    ClusterRoom::connect(config)
                })
            })
            .collect();
        for node in nodes {
            let node = node.join().expect("a node's thread");
            if let Err(error) = &node {
                panic!("round {round}: a node failed to start: {error}");
            }
        }
    }
}
