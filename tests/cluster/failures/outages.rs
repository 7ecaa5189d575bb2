//! NATS itself away: frozen 3 s, restarted within 3 s (lines wait, none
//! is lost, nobody is announced), and frozen 15 s (every node gives up).

use super::*;

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
        .map(|s| {
            s.iter()
                .filter(|l| !l.starts_with("priv("))
                .cloned()
                .collect()
        })
        .collect();
    assert_one_order(&[("a1", &public[0]), ("b1", &public[1]), ("c1", &public[2])]);
    for name in names {
        assert_said(&public[0], name, &numbered(name, 0..EACH));
    }
    for member in &m {
        for line in member.log.iter().filter(|l| l.text.ends_with(" 0")) {
            assert!(
                line.at >= ending,
                "{}: {:?} heard during the outage",
                member.label,
                line.text
            );
        }
    }
    // The whisper, once, in its place among c1's lines.
    let a1 = &seqs[0];
    let w = a1
        .iter()
        .position(|l| l == "priv(c1): in the dark")
        .expect("the whisper");
    assert_eq!(count(a1, "priv(c1): in the dark"), 1);
    let before = said_by(&a1[..w], "c1");
    assert_eq!(
        before.last().copied(),
        Some(format!("c1 {}", EACH / 2).as_str())
    );
}

#[test]
fn nats_paused_for_3_s() {
    short_outage(Outage::Paused, "paused");
}

#[test]
fn nats_restarted_within_3_s() {
    short_outage(Outage::Restarted, "restarted");
}

/// nats-server frozen for 15 s: every node shuts down as on SIGTERM (its
/// members' last line `Server is shutting down.`) once cut off for longer
/// than 5 s, and exits with status 1, while NATS is still away. Nobody is
/// left to announce anyone then; once NATS is back, a fresh node announces
/// the dead nodes' members (each once, within 10 s of NATS's return) and
/// frees their names.
#[test]
fn nats_paused_for_15_s() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut n = nodes(&nats.url(), "long", &["A", "B", "C"]);
    let names = ["a1", "b1", "c1", "c2"];
    let spec: Vec<_> = names
        .iter()
        .zip([0, 1, 2, 2])
        .map(|(name, i)| (n[i].addr(), *name))
        .collect();
    let mut m = members(&spec);
    let cut = Instant::now();
    nats.pause();
    // The outage lasts 15 s (ended by the sleep below).
    let outage = cut + Duration::from_secs(15);
    let mut down = Vec::new();
    for member in &mut m {
        let heard = member.read_to_end_by(outage);
        assert_eq!(
            heard.last().map(String::as_str),
            Some(SHUTTING_DOWN),
            "{}",
            member.label
        );
        down.push(member.when(SHUTTING_DOWN).expect("heard") - cut);
    }
    let mut exits = Vec::new();
    for node in &mut n {
        let status = node.wait_exit_within(outage.saturating_duration_since(Instant::now()));
        exits.push(cut.elapsed());
        assert_eq!(status.code(), Some(1), "{}: {}", node.label, node.stderr());
    }
    sleep_until(outage);
    nats.resume();
    let back = Instant::now();
    let fresh = node(&nats.url(), "long", "D", &[]);
    let (mut d1, _) = Heard::join(fresh.addr(), "d1");
    for name in names {
        if d1.when(&left(name)).is_none() {
            d1.read_until_by(&left(name), back + WAIT);
        }
    }
    d1.send_line("\\list");
    d1.expect("Users online (1): d1");
    let (_a1, _) = Heard::join(fresh.addr(), "A1");
    let (_c2, _) = Heard::join(fresh.addr(), "c2");
    d1.send_line("END");
    d1.read_until("d1: END");
    let announced = names
        .iter()
        .map(|name| d1.when(&left(name)).expect("heard"))
        .max()
        .expect("four")
        - back;
    eprintln!(
        "NATS away 15 s: shut down {down:?} and exited {exits:?} after the cut; a fresh node \
         announced them {announced:?} after NATS came back"
    );
    for name in names {
        assert_eq!(d1.count(&left(name)), 1, "{name}'s leave notices");
    }
    for (d, e) in down.iter().zip(&exits) {
        assert!(*d > GIVES_UP_AFTER, "shut down {d:?} after the cut");
        assert!(*e > GIVES_UP_AFTER, "exited {e:?} after the cut");
    }
    assert!(
        announced < ANNOUNCED_WITHIN,
        "announced {announced:?} after NATS came back"
    );
}
