//! Property tests of [`ChatRoom`] against a plain model.
//!
//! Random joins (valid, invalid and taken names), leaves, public lines
//! (alone and in batches), whispers (to members and to nobody), members
//! whose small outboxes overflow (drained now and then, or never), and in
//! one case in four the room closes somewhere along the way.
//! Every member's byte stream must equal, byte for byte, what the model
//! says; so does every result, and the list of members after every step.
//!
//! The model is a list of members in join order and, per member, the bytes
//! queued and the bytes taken. It renders every line itself. When one event
//! overflows several members, the room removes them last overflowed first,
//! each followed by its leave notice; the model does the same, so that the
//! order of those notices is checked too.
//!
//! Public events go to the room's log once; the model numbers their bytes
//! the same way. A member that left still has to write what it was sent
//! before, and is held to its limit while it has not: once the room's log
//! has moved on past its limit (counting its unread private bytes), its
//! outbox is aborted, so that it holds no memory of the room's.
//!
//! A second property runs several senders on threads at once: every member
//! sees the public lines it shares with any other member in the same order.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use chatcore::protocol::Reply;
use chatcore::{ChatRoom, JoinError, MemberId, Outbox, OutboxState, RoomError};
use proptest::prelude::*;

/// Names to join with: valid ones (some the same as another without regard
/// to case), then [`INVALID_NAMES`] invalid ones.
const NAMES: &[&str] = &[
    "ana",
    "Ana",
    "bob",
    "BOB",
    "cy",
    "dé",
    "DÉ",
    "ñandú",
    "a-long-name-of-thirty-two-chars_",
    "",
    "a b",
    "\\w",
    "tab\there",
    "thirty-three-characters-is-1-too-",
];

/// How many names at the end of [`NAMES`] are invalid.
const INVALID_NAMES: usize = 5;

/// Texts of public and private lines.
const TEXTS: &[&str] = &[
    "hi",
    "",
    "  two  spaces ",
    "ünïcödé",
    "0123456789abcdefghij",
];

/// Whether `name` breaks the naming rules (checked by hand: the model does
/// not ask the crate).
fn invalid(name: &str) -> bool {
    matches!(
        name,
        "" | "a b" | "\\w" | "tab\there" | "thirty-three-characters-is-1-too-"
    )
}

/// The outbox a joining member gets.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Never overflows here.
    Roomy,
    /// A small limit; drained when an `Op::Drain` says so.
    Drained(usize),
    /// A small limit; never drained until the end.
    Stuck(usize),
}

impl Kind {
    fn limit(self) -> usize {
        match self {
            Kind::Roomy => 1 << 20,
            Kind::Drained(limit) | Kind::Stuck(limit) => limit,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join { name: usize, kind: Kind },
    Leave(usize),
    Say { from: usize, text: usize },
    SayAll { from: usize, texts: Vec<usize> },
    Whisper { from: usize, to: usize, text: usize },
    Drain(usize),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::Roomy),
        // 40 bytes cannot take a welcome and a join line; 60 just can.
        2 => prop::sample::select(vec![40usize, 60, 120, 250]).prop_map(Kind::Drained),
        1 => prop::sample::select(vec![60usize, 150, 400]).prop_map(Kind::Stuck),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Valid names three times in four.
    let valid = NAMES.len() - INVALID_NAMES;
    let name = prop_oneof![3 => 0..valid, 1 => valid..NAMES.len()];
    let text = 0..TEXTS.len();
    let slot = 0..64usize;
    prop_oneof![
        6 => (name.clone(), kind()).prop_map(|(name, kind)| Op::Join { name, kind }),
        2 => slot.clone().prop_map(Op::Leave),
        6 => (slot.clone(), text.clone()).prop_map(|(from, text)| Op::Say { from, text }),
        3 => (slot.clone(), prop::collection::vec(text.clone(), 0..4))
            .prop_map(|(from, texts)| Op::SayAll { from, texts }),
        // Names that can be online, and one that cannot.
        4 => (slot.clone(), 0..=valid, text)
            .prop_map(|(from, to, text)| Op::Whisper { from, to, text }),
        4 => slot.prop_map(Op::Drain),
    ]
}

/// One outbox: the real one, and what the model expects of it.
struct Slot {
    outbox: Arc<Outbox>,
    kind: Kind,
    /// Set once its join succeeded (and kept after it left).
    id: Option<MemberId>,
    /// Everything taken from the real outbox so far.
    taken: Vec<u8>,
    model: Expected,
}

/// What the model expects of one outbox.
#[derive(Default)]
struct Expected {
    name: String,
    limit: usize,
    queued: Vec<u8>,
    taken: Vec<u8>,
    aborted: bool,
    closed: bool,
    /// The log position of its first queued log byte, if any.
    log_from: Option<u64>,
    /// Its queued private bytes.
    private: usize,
}

impl Expected {
    /// A push of a private line; returns whether it overflowed.
    fn push(&mut self, line: &str) -> bool {
        let overflowed = self.push_bytes(line);
        if !overflowed && !self.aborted && !self.closed {
            self.private += line.len();
        }
        overflowed
    }

    /// A push of the log's bytes from `pos`; returns whether it overflowed.
    fn push_log(&mut self, line: &str, pos: u64) -> bool {
        let overflowed = self.push_bytes(line);
        if !overflowed && !self.aborted && !self.closed {
            self.log_from.get_or_insert(pos);
        }
        overflowed
    }

    fn push_bytes(&mut self, line: &str) -> bool {
        if self.aborted || self.closed {
            return false;
        }
        if self.queued.len() + line.len() > self.limit {
            self.abort();
            return true;
        }
        self.queued.extend_from_slice(line.as_bytes());
        false
    }

    fn abort(&mut self) {
        self.aborted = true;
        self.queued.clear();
        self.log_from = None;
        self.private = 0;
    }

    /// A member that left, once the log ends at `end`: aborted if it is
    /// over its limit.
    fn check_departed(&mut self, end: u64) {
        if let (Some(from), false) = (self.log_from, self.aborted || self.closed) {
            if (end - from) as usize + self.private > self.limit {
                self.abort();
            }
        }
    }

    fn take(&mut self) {
        let queued = std::mem::take(&mut self.queued);
        self.taken.extend_from_slice(&queued);
        self.log_from = None;
        self.private = 0;
    }

    fn state(&self) -> OutboxState {
        if self.aborted {
            OutboxState::Aborted
        } else if self.closed {
            OutboxState::Closing
        } else {
            OutboxState::Open
        }
    }
}

/// The plain model of a room: slots in join order.
#[derive(Default)]
struct Model {
    members: Vec<usize>,
    closed: bool,
    /// Bytes appended to the room's log so far.
    log_end: u64,
}

impl Model {
    fn key(name: &str) -> String {
        name.to_lowercase()
    }

    fn is_member(&self, slot: usize) -> bool {
        self.members.contains(&slot)
    }

    /// Appends `line` to the log: every member but `except` gets it (and
    /// whoever it takes over its limit is cut), and members that left are
    /// held to their limit. Returns the members cut.
    fn append(&mut self, slots: &mut [Slot], line: &str, except: Option<usize>) -> Vec<usize> {
        let pos = self.log_end;
        self.log_end += line.len() as u64;
        let mut overflowed = Vec::new();
        for &m in &self.members {
            if Some(m) != except && slots[m].model.push_log(line, pos) {
                overflowed.push(m);
            }
        }
        for (s, slot) in slots.iter_mut().enumerate() {
            if !self.members.contains(&s) {
                slot.model.check_departed(self.log_end);
            }
        }
        overflowed
    }

    /// Appends `line`, then removes whoever it cut.
    fn deliver(&mut self, slots: &mut [Slot], line: &str, except: Option<usize>) {
        let overflowed = self.append(slots, line, except);
        self.remove_overflowed(slots, overflowed);
    }

    fn remove_overflowed(&mut self, slots: &mut [Slot], mut overflowed: Vec<usize>) {
        while let Some(gone) = overflowed.pop() {
            let Some(at) = self.members.iter().position(|&m| m == gone) else {
                continue;
            };
            self.members.remove(at);
            let line = format!("{} has left the chat.\n", slots[gone].model.name);
            let more = self.append(slots, &line, None);
            overflowed.extend(more);
        }
    }

    fn join(&mut self, slots: &mut [Slot], slot: usize) -> Result<(), &'static str> {
        let name = slots[slot].model.name.clone();
        if invalid(&name) {
            return Err("invalid");
        }
        if self.closed {
            return Err("closed");
        }
        let key = Self::key(&name);
        if self
            .members
            .iter()
            .any(|&m| Self::key(&slots[m].model.name) == key)
        {
            return Err("taken");
        }
        let joined = format!("{name} has joined the chat.\n");
        let welcome = format!("Welcome to the chat, {name}!\n");
        let model = &mut slots[slot].model;
        if model.queued.len() + welcome.len() + joined.len() > model.limit {
            model.abort();
            return Err("undeliverable");
        }
        let _ = model.push(&welcome);
        let _ = model.push_log(&joined, self.log_end);
        self.members.push(slot);
        self.deliver(slots, &joined, Some(slot));
        Ok(())
    }

    fn leave(&mut self, slots: &mut [Slot], slot: usize) -> bool {
        if self.closed || !self.is_member(slot) {
            return false;
        }
        self.members.retain(|&m| m != slot);
        let line = format!("{} has left the chat.\n", slots[slot].model.name);
        self.deliver(slots, &line, None);
        true
    }

    fn say(&mut self, slots: &mut [Slot], from: usize, texts: &[&str]) -> Result<(), &'static str> {
        if texts.is_empty() {
            return Ok(());
        }
        if self.closed {
            return Err("closed");
        }
        if !self.is_member(from) {
            return Err("not a member");
        }
        let name = &slots[from].model.name;
        let block: String = texts.iter().map(|t| format!("{name}: {t}\n")).collect();
        self.deliver(slots, &block, None);
        Ok(())
    }

    fn whisper(
        &mut self,
        slots: &mut [Slot],
        from: usize,
        to: &str,
        text: &str,
    ) -> Result<(), &'static str> {
        if self.closed {
            return Err("closed");
        }
        if !self.is_member(from) {
            return Err("not a member");
        }
        let key = Self::key(to);
        let Some(&target) = self
            .members
            .iter()
            .find(|&&m| Self::key(&slots[m].model.name) == key)
        else {
            return Err("not found");
        };
        let line = format!("priv({}): {text}\n", slots[from].model.name);
        if slots[target].model.push(&line) {
            self.remove_overflowed(slots, vec![target]);
        }
        Ok(())
    }

    fn close(&mut self, slots: &mut [Slot], last: &str) {
        self.closed = true;
        for m in std::mem::take(&mut self.members) {
            let model = &mut slots[m].model;
            if !model.aborted && !model.closed {
                model.queued.extend_from_slice(last.as_bytes());
                model.closed = true;
            }
        }
    }
}

fn join_result(result: Result<MemberId, JoinError>) -> Result<(), &'static str> {
    match result {
        Ok(_) => Ok(()),
        Err(JoinError::InvalidName(_)) => Err("invalid"),
        Err(JoinError::Closed) => Err("closed"),
        Err(JoinError::NameTaken(_)) => Err("taken"),
        Err(JoinError::Undeliverable) => Err("undeliverable"),
        Err(other) => panic!("unexpected join error: {other}"),
    }
}

fn room_result(result: Result<(), RoomError>) -> Result<(), &'static str> {
    match result {
        Ok(()) => Ok(()),
        Err(RoomError::Closed) => Err("closed"),
        Err(RoomError::NotMember(_)) => Err("not a member"),
        Err(RoomError::UserNotFound(_)) => Err("not found"),
        Err(other) => panic!("unexpected room error: {other}"),
    }
}

/// Takes what the real outbox holds; the model does the same.
fn drain(slot: &mut Slot) {
    let (bytes, _) = slot.outbox.take();
    slot.taken.extend_from_slice(&bytes);
    slot.model.take();
}

fn check(slot: &Slot, step: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        String::from_utf8_lossy(&slot.taken),
        String::from_utf8_lossy(&slot.model.taken),
        "{}'s lines after step {}",
        slot.model.name,
        step
    );
    prop_assert_eq!(
        slot.outbox.state(),
        slot.model.state(),
        "{}",
        slot.model.name
    );
    Ok(())
}

/// Runs `ops`, closing the room before step `close_at` if given.
fn run(ops: &[Op], close_at: Option<usize>) -> Result<(), TestCaseError> {
    let room = ChatRoom::new();
    let mut model = Model::default();
    let mut slots: Vec<Slot> = Vec::new();
    let last = Reply::ShuttingDown.encode();
    let last_line = std::str::from_utf8(&last).expect("UTF-8");
    for (step, op) in ops.iter().enumerate() {
        if close_at == Some(step) {
            room.close(&last);
            model.close(&mut slots, last_line);
        }
        // Ops name slots modulo how many there are; only those that joined
        // (and may have left since) have an id to act with.
        let pick = |slots: &[Slot], i: usize| (!slots.is_empty()).then(|| i % slots.len());
        let joined = |slots: &[Slot], i: usize| {
            let ever: Vec<usize> = (0..slots.len())
                .filter(|&s| slots[s].id.is_some())
                .collect();
            (!ever.is_empty()).then(|| ever[i % ever.len()])
        };
        match *op {
            Op::Join { name, kind } => {
                let outbox = Arc::new(Outbox::new(kind.limit()));
                let name = NAMES[name];
                slots.push(Slot {
                    outbox: outbox.clone(),
                    kind,
                    id: None,
                    taken: Vec::new(),
                    model: Expected {
                        name: name.to_owned(),
                        limit: kind.limit(),
                        ..Expected::default()
                    },
                });
                let slot = slots.len() - 1;
                let result = room.join(name, outbox);
                if let Ok(id) = result {
                    slots[slot].id = Some(id);
                }
                let expected = model.join(&mut slots, slot);
                prop_assert_eq!(join_result(result), expected, "join {:?}", name);
            }
            Op::Leave(i) => {
                if let Some(s) = joined(&slots, i) {
                    let id = slots[s].id.expect("joined");
                    let left = room.leave(id);
                    prop_assert_eq!(left, model.leave(&mut slots, s));
                }
            }
            Op::Say { from, text } => {
                if let Some(s) = joined(&slots, from) {
                    let id = slots[s].id.expect("joined");
                    let text = format!("{step} {}", TEXTS[text]);
                    let result = room_result(room.broadcast(id, &text));
                    prop_assert_eq!(result, model.say(&mut slots, s, &[&text]));
                }
            }
            Op::SayAll { from, ref texts } => {
                if let Some(s) = joined(&slots, from) {
                    let id = slots[s].id.expect("joined");
                    let texts: Vec<String> = texts
                        .iter()
                        .map(|&t| format!("{step} {}", TEXTS[t]))
                        .collect();
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let result = room_result(room.broadcast_all(id, &texts));
                    prop_assert_eq!(result, model.say(&mut slots, s, &texts));
                }
            }
            Op::Whisper { from, to, text } => {
                if let Some(s) = joined(&slots, from) {
                    let id = slots[s].id.expect("joined");
                    let text = format!("{step} {}", TEXTS[text]);
                    let result = room_result(room.whisper(id, NAMES[to], &text));
                    prop_assert_eq!(result, model.whisper(&mut slots, s, NAMES[to], &text));
                }
            }
            Op::Drain(i) => {
                if let Some(s) = pick(&slots, i) {
                    if !matches!(slots[s].kind, Kind::Stuck(_)) {
                        drain(&mut slots[s]);
                        check(&slots[s], step)?;
                    }
                }
            }
        }
        let names: Vec<Arc<str>> = model
            .members
            .iter()
            .map(|&m| Arc::from(slots[m].model.name.as_str()))
            .collect();
        prop_assert_eq!(room.member_names(), names, "members after step {}", step);
    }
    for slot in &mut slots {
        drain(slot);
        check(slot, ops.len())?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_room_matches_the_model(
        ops in prop::collection::vec(op(), 1..80),
        close_at in prop::option::weighted(0.25, any::<prop::sample::Index>()),
    ) {
        run(&ops, close_at.map(|at| at.index(ops.len())))?;
    }
}

/// Public lines from several threads at once, while one member leaves and
/// another joins: the lines each member holds. Every line is unique.
fn concurrent_lines(senders: usize, batches: &[Vec<usize>]) -> Vec<Vec<String>> {
    let room = Arc::new(ChatRoom::new());
    // The senders, one member that stays, one that leaves, one that joins.
    let outboxes: Vec<Arc<Outbox>> = (0..senders + 3)
        .map(|_| Arc::new(Outbox::new(1 << 24)))
        .collect();
    let ids: Vec<MemberId> = outboxes[..senders + 2]
        .iter()
        .enumerate()
        .map(|(i, outbox)| room.join(&format!("m{i}"), outbox.clone()).expect("join"))
        .collect();
    thread::scope(|scope| {
        for (s, &id) in ids.iter().enumerate().take(senders) {
            let room = &room;
            scope.spawn(move || {
                let mut n = 0;
                for (b, &size) in batches.iter().flatten().enumerate() {
                    if b % senders != s {
                        continue;
                    }
                    let texts: Vec<String> = (0..size).map(|k| format!("{}", n + k)).collect();
                    n += size;
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    room.broadcast_all(id, &texts).expect("broadcast");
                }
            });
        }
        room.leave(ids[senders + 1]);
        room.join("late", outboxes[senders + 2].clone())
            .expect("join");
    });
    outboxes
        .iter()
        .map(|outbox| {
            String::from_utf8(outbox.drain_bytes())
                .expect("UTF-8")
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn all_members_agree_on_one_order(
        senders in 2..5usize,
        batches in prop::collection::vec(prop::collection::vec(1..4usize, 1..20), 1..4),
    ) {
        let members = concurrent_lines(senders, &batches);
        // Position of each line in each member's stream.
        let positions: Vec<HashMap<&str, usize>> = members
            .iter()
            .map(|lines| lines.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect())
            .collect();
        for (a, lines) in members.iter().enumerate() {
            for (b, seen) in positions.iter().enumerate().skip(a + 1) {
                let shared: Vec<usize> = lines
                    .iter()
                    .filter_map(|line| seen.get(line.as_str()).copied())
                    .collect();
                prop_assert!(
                    shared.windows(2).all(|w| w[0] < w[1]),
                    "members {} and {} disagree on the order", a, b
                );
            }
        }
        // A member there from start to end got every public line.
        let total: usize = batches.iter().flatten().sum();
        let public = members[senders].iter().filter(|l| l.starts_with('m') && l.contains(": ")).count();
        prop_assert_eq!(public, total);
    }
}
