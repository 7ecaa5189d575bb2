//! One room across several servers, against a real nats-server started by
//! each test on 127.0.0.1: three nodes (both drivers), members on each. One
//! order for every member, names unique under a race, `\list` and whispers
//! across nodes, leaves, history from the whole room, and `tcp_server
//! --nats` as a process.
#![cfg(feature = "nats")]

mod common;
mod nats;
#[path = "cluster/nodes.rs"]
mod nodes;
mod procs;
#[path = "cluster/refused.rs"]
mod refused;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use chatcore::ServerConfig;
use common::{Client, Io, Kind, Trust};
use nats::NatsServer;
use nodes::{lines, link_config, Node};
use procs::ServerProc;

/// Three nodes of `room`, over both drivers.
fn three_nodes(nats: &NatsServer, room: &str, history: usize) -> Vec<Node> {
    [("a", Io::Events), ("b", Io::Threads), ("c", Io::Events)]
        .into_iter()
        .map(|(label, io)| Node::start(label, link_config(nats, room, history), io))
        .collect()
}

/// Joins `names[i]` on node `i % 3`, one after the other; each reads the
/// join notices of those after it, so that all are in the same place.
fn members(nodes: &[Node], names: &[&str]) -> Vec<Client> {
    let mut members: Vec<Client> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let client = nodes[i % nodes.len()].join(name);
        for earlier in &mut members {
            earlier.expect(&format!("{name} has joined the chat."));
        }
        members.push(client);
    }
    members
}

#[test]
fn members_on_three_nodes_see_one_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let nodes = three_nodes(&nats, "order", 0);
    let names = ["ana", "bob", "cy", "dee", "eve", "fay"];
    let mut clients = members(&nodes, &names);
    const EACH: usize = 100;
    // Every member sends flat out (in bursts, so lines are read together
    // and batched), from its own thread, while every member reads.
    let senders: Vec<_> = clients
        .iter()
        .zip(names)
        .map(|(client, name)| {
            let stream = client.stream().try_clone().expect("a clone");
            thread::spawn(move || {
                use std::io::Write;
                let mut stream = stream;
                let mut burst = Vec::new();
                for i in 0..EACH {
                    burst.extend_from_slice(format!("{name} {i}\n").as_bytes());
                    if i % 10 == 9 {
                        stream.write_all(&burst).expect("send");
                        burst.clear();
                    }
                }
            })
        })
        .collect();
    let total = EACH * names.len();
    let seen: Vec<Vec<String>> = clients.iter_mut().map(|c| lines(c, total)).collect();
    for sender in senders {
        sender.join().expect("a sender");
    }
    for (name, got) in names.iter().zip(&seen) {
        assert_eq!(got, &seen[0], "{name} saw another order than ana");
    }
    // Each sender's lines in the order sent, each once.
    for name in names {
        let mine: Vec<&String> = seen[0]
            .iter()
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("{name}: {name} {i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{name}'s lines");
    }
}

#[test]
fn the_same_name_claimed_on_two_nodes_at_once_has_one_winner() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let nodes = three_nodes(&nats, "race", 0);
    for round in 0..20 {
        let name = format!("Racer{round}");
        let mut a = nodes[0].connect(&name);
        let mut b = nodes[1].connect(&name);
        // Different case on each side: one name all the same.
        a.send_line(&name);
        b.send_line(&name.to_uppercase());
        let welcome = |client: &mut Client, asked: &str| {
            let line = client.line();
            if line == format!("Welcome to the chat, {asked}!") {
                client.expect(&format!("{asked} has joined the chat."));
                true
            } else {
                assert_eq!(line, format!("Name '{asked}' is already taken."));
                client.expect("NAME");
                false
            }
        };
        let won_a = welcome(&mut a, &name);
        let won_b = welcome(&mut b, &name.to_uppercase());
        assert!(
            won_a != won_b,
            "round {round}: a won {won_a}, b won {won_b}"
        );
        // The winner leaves; the name is then free on every node.
        let (winner, loser) = if won_a {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        winner.send_line("QUIT");
        quit_seen(winner);
        loser.send_line(&format!("{name}x"));
        loser.expect(&format!("Welcome to the chat, {name}x!"));
        let _ = loser.read_until(&format!("{name}x has joined the chat."));
        loser.send_line("QUIT");
        quit_seen(loser);
    }
}

/// After `QUIT`: the connection closes, with at most the room's notices
/// accepted before the leave.
fn quit_seen(client: &mut Client) {
    let rest = client.read_until_closed();
    assert!(
        rest.iter().all(|l| l.ends_with(" the chat.")),
        "{}: {rest:?}",
        client.name
    );
}

#[test]
fn list_and_whispers_span_the_nodes() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let nodes = three_nodes(&nats, "span", 0);
    let mut m = members(&nodes, &["ana", "Bob", "cy"]);
    for (i, client) in m.iter_mut().enumerate() {
        client.send_line("\\list");
        client.expect("Users online (3): ana, Bob, cy");
        assert!(i < 3);
    }
    // ana (node a) to Bob (node b), in order with her public lines.
    m[0].send_line("p1");
    m[0].send_line("\\w BOB w1");
    m[0].send_line("p2");
    m[0].send_line("\\w nobody hi");
    m[0].send_line("\\help");
    for line in [
        "ana: p1",
        "ana: p2",
        "User 'nobody' not found.",
        "Commands: \\w <name> <message>, \\list, \\help, QUIT",
    ] {
        m[0].expect(line);
    }
    for line in ["ana: p1", "priv(ana): w1", "ana: p2"] {
        m[1].expect(line);
    }
    for line in ["ana: p1", "ana: p2"] {
        m[2].expect(line);
    }
    // A whisper to oneself across nothing at all, and to a member of the
    // third node.
    m[2].send_line("\\w ana from cy");
    m[0].expect("priv(cy): from cy");
    // Leaves reach every node; the name is free again, on any node.
    m[1].send_line("QUIT");
    m[1].expect_closed();
    m[0].expect("Bob has left the chat.");
    m[2].expect("Bob has left the chat.");
    m[2].send_line("\\list");
    m[2].expect("Users online (2): ana, cy");
    let _bob_again = nodes[2].join("bob");
    m[0].expect("bob has joined the chat.");
}

#[test]
fn history_comes_from_the_whole_room() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let nodes = three_nodes(&nats, "history", 3);
    let mut m = members(&nodes, &["ana", "bob"]);
    m[0].send_line("one");
    m[0].send_line("\\w bob secret");
    m[1].send_line("two");
    m[0].send_line("three");
    m[1].send_line("four");
    // The four public lines in the room's order, as ana saw them.
    let order = lines(&mut m[0], 4);
    let got: HashSet<&String> = order.iter().collect();
    let want = ["ana: one", "bob: two", "ana: three", "bob: four"];
    assert_eq!(
        got,
        want.iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );
    // A newcomer on the third node gets the last three, whispers never.
    let (_cy, history) = nodes[2].join_with_history("cy");
    assert_eq!(history, order[1..], "the latest lines in the room's order");
}

#[test]
fn tcp_server_nats_is_a_node_and_leaves_on_sigterm() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let mut proc = ServerProc::start(
        "tcp_server --nats",
        &["--nats", &url, "--room", "procs", "--history", "2"],
    );
    let node = Node::start("in-process", link_config(&nats, "procs", 2), Io::Events);
    let mut ana = Client::connect(proc.addr());
    ana.name = "ana@proc".into();
    ana.expect("NAME");
    ana.send_line("ana");
    ana.expect("Welcome to the chat, ana!");
    ana.expect("ana has joined the chat.");
    for text in ["one", "two", "three"] {
        ana.send_line(text);
        ana.expect(&format!("ana: {text}"));
    }
    // History from the process node's lines, on the other node.
    let (mut bob, history) = node.join_with_history("bob");
    assert_eq!(history, ["ana: two", "ana: three"]);
    ana.expect("bob has joined the chat.");
    ana.send_line("\\list");
    ana.expect("Users online (2): ana, bob");
    // SIGTERM: ana gets the last line, bob her leave; the name is free.
    proc.signal("TERM");
    ana.expect("Server is shutting down.");
    ana.expect_closed();
    bob.expect("ana has left the chat.");
    proc.expect_exit(0);
    let (_ana_again, _) = node.join_with_history("ana");
}

#[test]
fn tcp_server_with_an_invalid_room_exits_1() {
    let mut proc = ServerProc::start(
        "tcp_server --room 'no spaces'",
        &["--nats", "nats://127.0.0.1:1", "--room", "no spaces"],
    );
    assert!(proc.addr.is_none(), "it must not listen");
    proc.expect_exit(1);
    assert!(
        proc.stderr().contains("invalid --room"),
        "{}",
        proc.stderr()
    );
}

#[test]
fn tcp_server_without_nats_exits_1_within_10_s() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    procs::tcp_server_binary(); // built before the clock starts
    let started = Instant::now();
    let mut proc = ServerProc::start("tcp_server, no NATS", &["--nats", &url]);
    assert!(proc.addr.is_none(), "it must not listen");
    proc.wait_exit_within(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    proc.expect_exit(1);
    let log = proc.stderr();
    assert!(log.contains(&format!("cannot use NATS at {url}")), "{log}");
}

#[test]
fn websocket_members_chat_across_nodes() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    for (i, &io) in [Io::Events, Io::Threads].iter().enumerate() {
        let room = format!("ws{i}");
        let config = || link_config(&nats, &room, 0);
        let a = Node::start_with("a", config(), io, ServerConfig::default(), true);
        let b = Node::start_with("b", config(), io, ServerConfig::default(), true);
        let ws = |node: &Node, name: &str| {
            let addr = node.ws_addr.expect("a WebSocket listener");
            let mut client = Client::connect_over(Kind::Ws, addr, &Trust::default());
            client.name = format!("{name}@{}", node.label);
            client.expect("NAME");
            client.send_line(name);
            client.expect(&format!("Welcome to the chat, {name}!"));
            client.expect(&format!("{name} has joined the chat."));
            client
        };
        let mut ana = ws(&a, "ana");
        let mut bob = b.join("bob");
        ana.expect("bob has joined the chat.");
        let mut cy = ws(&b, "cy");
        for c in [&mut ana, &mut bob] {
            c.expect("cy has joined the chat.");
        }
        ana.send_line("over websocket");
        bob.send_line("\\w cy psst");
        for c in [&mut ana, &mut bob] {
            c.expect("ana: over websocket");
        }
        // Two senders: either order.
        let mut got = lines(&mut cy, 2);
        got.sort();
        assert_eq!(got, ["ana: over websocket", "priv(bob): psst"]);
        cy.send_line("QUIT");
        cy.expect_closed_with(1000);
        ana.expect("cy has left the chat.");
        bob.expect("cy has left the chat.");
    }
}

#[test]
fn a_slow_consumer_on_one_node_leaves_every_node_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let config = || link_config(&nats, "slow", 0);
    // The slow member's node holds 32 KiB for it; the others 1 MiB.
    let small = ServerConfig::default().queue_bytes(32 * 1024);
    let a = Node::start_with("a", config(), Io::Events, small, false);
    let b = Node::start("b", config(), Io::Threads);
    let _sloth = common::connect_never_reading(a.addr, "sloth");
    let mut talker = b.join("talker");
    // Until the room has sloth (each ask is a round trip through it).
    loop {
        talker.send_line("\\list");
        let line = loop {
            let line = talker.line();
            if line.starts_with("Users online") {
                break line;
            }
        };
        if line.contains("sloth") {
            break;
        }
    }
    let mut watcher = b.join("watcher");
    talker.read_until("watcher has joined the chat.");
    // Far more than the slow member's queue and its kernel buffers, and
    // less than the others' queues.
    const LINES: usize = 3000;
    let mut stream = talker.stream().try_clone().expect("a clone");
    let sender = thread::spawn(move || {
        use std::io::Write;
        let text = "x".repeat(200);
        let flood: String = (0..LINES).map(|i| format!("{i} {text}\n")).collect();
        stream.write_all(flood.as_bytes()).expect("the flood");
    });
    let mut before = Vec::new();
    for c in [&mut talker, &mut watcher] {
        let lines = c.read_until("sloth has left the chat.");
        assert!(
            lines.len() < LINES,
            "{} lines before the leave",
            lines.len()
        );
        assert!(
            lines.iter().all(|l| l.starts_with("talker: ")),
            "{}",
            c.name
        );
        before.push(lines.len());
    }
    assert_eq!(before[0], before[1], "one place in one order");
    sender.join().expect("the sender");
    talker.send_line("after");
    for (c, before) in [&mut talker, &mut watcher].into_iter().zip(before) {
        let rest = c.read_until("talker: after");
        assert_eq!(before + rest.len(), LINES, "{}: every line once", c.name);
        assert!(
            !rest.iter().any(|l| l.contains("has left")),
            "one notice only"
        );
    }
}

#[test]
fn history_outlives_every_node() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut first = Node::start("first", link_config(&nats, "lasting", 2), Io::Events);
    let mut ana = first.join("ana");
    for text in ["one", "two", "three"] {
        ana.send_line(text);
        ana.expect(&format!("ana: {text}"));
    }
    first.stop();
    ana.expect("Server is shutting down.");
    ana.expect_closed();
    // No node left; a new one has the room's last lines all the same.
    let second = Node::start("second", link_config(&nats, "lasting", 2), Io::Threads);
    let (mut bob, history) = second.join_with_history("bob");
    assert_eq!(history, ["ana: two", "ana: three"]);
    bob.send_line("\\list");
    bob.expect("Users online (1): bob");
}
