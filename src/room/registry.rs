//! The room's registry of members, and what its operations leave to do
//! once its lock is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use crate::outbox::{Fallout, Outbox, RoomLog, WakeKind};
use crate::protocol::Reply;

use super::history::History;
use super::MemberId;

pub(super) struct Member {
    pub(super) id: MemberId,
    pub(super) name: Arc<str>,
    /// Its name's key (see [`name_key`](crate::protocol::name_key)).
    pub(super) key: String,
    pub(super) outbox: Arc<Outbox>,
}

/// What a room operation leaves to do once the lock is released.
#[derive(Default)]
pub(super) struct Aftermath {
    wake: Vec<(Weak<Outbox>, WakeKind)>,
    abort: Vec<Weak<Outbox>>,
    /// Members removed as slow consumers, for the log (and, for a relayed
    /// room, for its caller to announce).
    pub(super) cut: Vec<MemberId>,
}

impl Aftermath {
    pub(super) fn run(self) {
        for outbox in self.abort {
            if let Some(outbox) = outbox.upgrade() {
                outbox.abort();
            }
        }
        for (outbox, kind) in self.wake {
            if let Some(outbox) = outbox.upgrade() {
                outbox.wake_from_log(kind);
            }
        }
        for id in self.cut {
            log::info!("member {id} removed: its backlog passed its limit");
        }
    }
}

#[derive(Default)]
pub(super) struct Registry {
    /// By id, so in join order.
    pub(super) members: BTreeMap<MemberId, Member>,
    /// Name key to member id.
    pub(super) by_key: HashMap<String, MemberId>,
    pub(super) next_id: u64,
    pub(super) closed: bool,
    /// The latest public lines, for newcomers.
    pub(super) history: History,
    /// The room's events are decided elsewhere and relayed here (a node of
    /// a room across servers): a member cut as a slow consumer is removed
    /// without a notice, which the caller has announced by the room's one
    /// order instead (see [`Aftermath::cut`]).
    pub(super) relayed: bool,
}

impl Registry {
    pub(super) fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Appends a public event to the log, then removes whoever it cut.
    pub(super) fn publish(&mut self, log: &RoomLog, event: &[u8], after: &mut Aftermath) {
        let mut fallout = Fallout::default();
        log.append(event, &mut fallout);
        let mut cut = Vec::new();
        self.collect(&mut fallout, &mut cut, after);
        self.remove_cut(log, cut, after);
    }

    /// Takes the fallout of an append: wake-ups and aborts for later, and
    /// the members cut, in join order, onto `cut`.
    fn collect(&mut self, fallout: &mut Fallout, cut: &mut Vec<MemberId>, after: &mut Aftermath) {
        after.wake.append(&mut fallout.wake);
        after.abort.append(&mut fallout.abort);
        let start = cut.len();
        for (tag, outbox) in fallout.cut.drain(..) {
            cut.push(MemberId(tag));
            after.abort.push(outbox);
        }
        cut[start..].sort_unstable();
    }

    /// Removes the members in `cut`, last first, each followed by its leave
    /// notice as an event of its own; a notice that cuts others puts them
    /// next in line.
    /// A relayed room only removes them: their notices come later, by the
    /// room's order.
    pub(super) fn remove_cut(
        &mut self,
        log: &RoomLog,
        mut cut: Vec<MemberId>,
        after: &mut Aftermath,
    ) {
        let mut fallout = Fallout::default();
        while let Some(id) = cut.pop() {
            let Some(member) = self.remove(id) else {
                continue;
            };
            after.cut.push(member.id);
            if self.relayed {
                continue;
            }
            log.append(&Reply::Left(&member.name).encode(), &mut fallout);
            self.collect(&mut fallout, &mut cut, after);
        }
    }

    pub(super) fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(&id)?;
        if self.by_key.get(&member.key) == Some(&id) {
            self.by_key.remove(&member.key);
        }
        Some(member)
    }
}
