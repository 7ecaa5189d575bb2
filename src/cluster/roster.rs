//! The room as the stream's events build it, on every node alike: who is in
//! it in join order, and the latest public lines. Sans-I/O.
//!
//! Every node applies the same events in the same order, so at any stream
//! sequence every node's roster is the same. That is what lets a node answer
//! `\list` and decide a whisper's target with no round trip: the answer is
//! the room's at that point of its order, the same on every node.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::event::{HistoryLine, LinkEvent, Member};
use super::names::{fold, NodeId};
use super::wire::{Entry, Record, Said, Whisper};

/// How many departed members are remembered (for name take-overs).
const DEPARTED_KEPT: usize = 65_536;

type Key = (NodeId, u64);

/// Members in join order, and the history ring.
#[derive(Debug)]
pub(crate) struct Roster {
    node: NodeId,
    order: BTreeMap<u64, Key>,
    members: HashMap<Key, (u64, Member)>,
    by_name: HashMap<String, Key>,
    departed: HashSet<Key>,
    departed_order: VecDeque<Key>,
    history: VecDeque<HistoryLine>,
    history_cap: usize,
}

impl Roster {
    /// An empty room seen from `node`, keeping `history_cap` public lines.
    pub fn new(node: NodeId, history_cap: usize) -> Self {
        Roster {
            node,
            order: BTreeMap::new(),
            members: HashMap::new(),
            by_name: HashMap::new(),
            departed: HashSet::new(),
            departed_order: VecDeque::new(),
            history: VecDeque::new(),
            history_cap,
        }
    }

    /// Applies the record at stream sequence `seq` and returns the events
    /// this node's sink gets for it.
    pub fn apply(&mut self, seq: u64, record: Record) -> Vec<LinkEvent> {
        match record {
            Record::Join { node, member, name } => self.join(seq, node, member, name),
            Record::Leave {
                node,
                member,
                reason,
                ..
            } => {
                let key = (node, member);
                let Some((join_seq, m)) = self.members.remove(&key) else {
                    return Vec::new(); // already gone: each leave counts once
                };
                self.order.remove(&join_seq);
                if self.by_name.get(&fold(&m.name)) == Some(&key) {
                    self.by_name.remove(&fold(&m.name));
                }
                self.remember_departed(key);
                vec![LinkEvent::Left {
                    seq,
                    member: m,
                    reason,
                }]
            }
            Record::Batch { node, entries } => {
                let mut events = Vec::with_capacity(entries.len());
                for entry in entries {
                    match entry {
                        Entry::Said(s) => events.push(self.said(seq, &node, s)),
                        Entry::Whisper(w) => events.extend(self.whisper(seq, &node, w)),
                    }
                }
                events
            }
        }
    }

    /// A member's public lines: kept in the history, and said.
    fn said(&mut self, seq: u64, node: &NodeId, s: Said) -> LinkEvent {
        let member = self.member_or(node, s.member, &s.name);
        if self.history_cap > 0 {
            for line in &s.lines {
                if self.history.len() == self.history_cap {
                    self.history.pop_front();
                }
                self.history.push_back(HistoryLine {
                    name: member.name.clone(),
                    text: line.as_str().into(),
                });
            }
        }
        LinkEvent::Said {
            seq,
            member,
            lines: s.lines,
        }
    }

    /// A whisper: its target decided by the roster of this moment.
    fn whisper(&self, seq: u64, node: &NodeId, w: Whisper) -> Option<LinkEvent> {
        let to = self
            .by_name
            .get(&fold(&w.target))
            .and_then(|k| self.members.get(k))
            .map(|(_, m)| m.clone());
        match to {
            Some(to) if to.node == self.node => Some(LinkEvent::Whispered {
                seq,
                from: self.member_or(node, w.member, &w.name),
                to,
                text: w.text,
            }),
            Some(_) => None,
            None if *node == self.node => Some(LinkEvent::NotFound {
                seq,
                from: w.member,
                target: w.target,
            }),
            None => None,
        }
    }

    fn join(&mut self, seq: u64, node: NodeId, id: u64, name: String) -> Vec<LinkEvent> {
        let key = (node, id);
        if self.members.contains_key(&key) || self.departed.contains(&key) {
            return Vec::new();
        }
        let member = Member {
            node: key.0.clone(),
            id,
            name: name.into(),
        };
        let folded = fold(&member.name);
        if let Some(other) = self.by_name.get(&folded) {
            log::warn!(
                "room: member {}/{} joined under a name that {}/{} holds",
                key.0,
                id,
                other.0,
                other.1
            );
        }
        self.by_name.insert(folded, key.clone());
        self.order.insert(seq, key.clone());
        self.members.insert(key, (seq, member.clone()));
        let history = if member.node == self.node {
            self.history.iter().cloned().collect()
        } else {
            Vec::new()
        };
        vec![LinkEvent::Joined {
            seq,
            member,
            history,
        }]
    }

    /// The member, or one made from the record when it is unknown here (its
    /// join is older than what this node replayed).
    fn member_or(&self, node: &NodeId, id: u64, name: &str) -> Member {
        match self.members.get(&(node.clone(), id)) {
            Some((_, m)) => m.clone(),
            None => Member {
                node: node.clone(),
                id,
                name: name.into(),
            },
        }
    }

    fn remember_departed(&mut self, key: Key) {
        if self.departed_order.len() == DEPARTED_KEPT {
            if let Some(old) = self.departed_order.pop_front() {
                self.departed.remove(&old);
            }
        }
        self.departed.insert(key.clone());
        self.departed_order.push_back(key);
    }

    /// The names of the room in join order.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.order
            .values()
            .filter_map(|k| self.members.get(k))
            .map(|(_, m)| m.name.clone())
            .collect()
    }

    /// The members `node` serves, in join order.
    pub fn members_of(&self, node: &NodeId) -> Vec<Member> {
        self.order
            .values()
            .filter(|k| &k.0 == node)
            .filter_map(|k| self.members.get(k))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every node that serves a member.
    pub fn nodes(&self) -> HashSet<NodeId> {
        self.members.keys().map(|k| k.0.clone()).collect()
    }

    /// Whether this member's leave has been applied (recently enough to be
    /// remembered).
    pub fn has_departed(&self, node: &NodeId, id: u64) -> bool {
        self.departed.contains(&(node.clone(), id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::LeaveReason;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn join(node: &str, member: u64, name: &str) -> Record {
        Record::Join {
            node: id(node),
            member,
            name: name.into(),
        }
    }

    fn leave(node: &str, member: u64) -> Record {
        Record::Leave {
            node: id(node),
            member,
            name: String::new(),
            reason: LeaveReason::Left,
        }
    }

    fn said(member: u64, name: &str, lines: &[&str]) -> Entry {
        Entry::Said(Said {
            member,
            name: name.into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        })
    }

    fn whispered(member: u64, target: &str) -> Entry {
        Entry::Whisper(Whisper {
            member,
            name: "x".into(),
            target: target.into(),
            text: "psst".into(),
        })
    }

    fn batch(node: &str, entries: Vec<Entry>) -> Record {
        Record::Batch {
            node: id(node),
            entries,
        }
    }

    fn say(node: &str, member: u64, name: &str, lines: &[&str]) -> Record {
        batch(node, vec![said(member, name, lines)])
    }

    fn whisper(node: &str, member: u64, target: &str) -> Record {
        batch(node, vec![whispered(member, target)])
    }

    #[test]
    fn names_in_join_order_and_leaves_once() {
        let mut r = Roster::new(id("a"), 0);
        assert_eq!(r.apply(1, join("a", 1, "Ana")).len(), 1);
        assert_eq!(r.apply(2, join("b", 1, "bob")).len(), 1);
        assert_eq!(r.apply(3, join("a", 2, "cy")).len(), 1);
        assert!(r.apply(4, join("a", 2, "cy")).is_empty(), "a repeated join");
        let names: Vec<_> = r.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["Ana", "bob", "cy"]);
        assert_eq!(r.apply(5, leave("b", 1)).len(), 1);
        assert!(r.apply(6, leave("b", 1)).is_empty(), "a second leave");
        assert!(r.has_departed(&id("b"), 1));
        assert!(
            r.apply(7, join("b", 1, "bob")).is_empty(),
            "a join after its leave"
        );
        assert_eq!(r.members_of(&id("a")).len(), 2);
        assert_eq!(r.nodes(), [id("a")].into_iter().collect());
    }

    #[test]
    fn whisper_goes_to_the_targets_node_or_back_as_not_found() {
        let mut here = Roster::new(id("a"), 0);
        let mut there = Roster::new(id("b"), 0);
        for r in [&mut here, &mut there] {
            r.apply(1, join("a", 1, "Ana"));
            r.apply(2, join("b", 1, "Bob"));
        }
        // From a's Ana to BOB (case-insensitive): only b delivers.
        assert!(here.apply(3, whisper("a", 1, "BOB")).is_empty());
        assert!(matches!(
            &there.apply(3, whisper("a", 1, "BOB"))[..],
            [LinkEvent::Whispered { to, .. }] if &*to.name == "Bob"
        ));
        // To nobody: only the sender's node answers.
        assert!(matches!(
            &here.apply(4, whisper("a", 1, "zed"))[..],
            [LinkEvent::NotFound { from: 1, target, .. }] if target == "zed"
        ));
        assert!(there.apply(4, whisper("a", 1, "zed")).is_empty());
    }

    #[test]
    fn a_batch_gives_its_lines_and_whispers_in_its_order() {
        let mut here = Roster::new(id("a"), 0);
        let mut there = Roster::new(id("b"), 0);
        for r in [&mut here, &mut there] {
            r.apply(1, join("a", 1, "Ana"));
            r.apply(2, join("b", 1, "Bob"));
        }
        let record = batch(
            "a",
            vec![
                said(1, "Ana", &["1"]),
                whispered(1, "bob"),
                whispered(1, "zed"),
                said(1, "Ana", &["2"]),
            ],
        );
        let texts = |events: &[LinkEvent]| -> Vec<String> {
            events
                .iter()
                .map(|e| match e {
                    LinkEvent::Said { seq: 3, lines, .. } => lines.join(","),
                    LinkEvent::Whispered { seq: 3, to, .. } => format!("to {}", to.name),
                    LinkEvent::NotFound { seq: 3, target, .. } => format!("no {target}"),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // The sender's node: its lines and the whisper to nobody, in order.
        assert_eq!(texts(&here.apply(3, record.clone())), ["1", "no zed", "2"]);
        // The target's node: the lines and the whisper to Bob, in order.
        assert_eq!(texts(&there.apply(3, record)), ["1", "to Bob", "2"]);
    }

    #[test]
    fn history_is_the_lines_just_before_a_local_join() {
        let mut r = Roster::new(id("a"), 2);
        r.apply(1, join("b", 1, "bob"));
        r.apply(2, say("b", 1, "bob", &["1", "2"]));
        r.apply(3, say("b", 1, "bob", &["3"]));
        let events = r.apply(4, join("a", 1, "ana"));
        let [LinkEvent::Joined { history, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        let texts: Vec<_> = history.iter().map(|h| h.text.to_string()).collect();
        assert_eq!(texts, ["2", "3"]);
        // Another node's member gets no replay from this node.
        let events = r.apply(5, join("b", 2, "cy"));
        assert!(matches!(&events[..], [LinkEvent::Joined { history, .. }] if history.is_empty()));
    }
}
