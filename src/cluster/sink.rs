//! The node's [`LinkSink`]: the room's events, in the stream's order,
//! applied to the node's local room; the answers to its members' requests
//! pushed into their outboxes. Runs on the link's bridge thread: quick,
//! nothing blocking (a room lock at most), and never a whisper's text in the
//! log.

use std::cell::Cell;
use std::sync::Arc;

use super::event::{HistoryLine, LinkEvent, LinkSink, Member, Refusal};
use super::node::{Node, DRAIN_TOKEN};
use crate::protocol::Reply;
use crate::room::{JoinError, MemberId};

thread_local! {
    /// Set while this thread delivers an event to a node.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is delivering a link's event right now (then
/// nothing may wait for the link).
pub(super) fn in_sink() -> bool {
    IN_SINK.with(Cell::get)
}

/// The sink of a [`ClusterRoom`](super::ClusterRoom)'s link.
pub(super) struct NodeSink(pub(super) Arc<Node>);

impl LinkSink for NodeSink {
    fn deliver(&mut self, event: LinkEvent) {
        IN_SINK.with(|flag| flag.set(true));
        self.0.apply(event);
        IN_SINK.with(|flag| flag.set(false));
    }
}

impl Node {
    /// Whether `member` is one of this node's.
    fn is_mine(&self, member: &Member) -> bool {
        self.me.get() == Some(&member.node)
    }

    fn apply(&self, event: LinkEvent) {
        match event {
            LinkEvent::Claimed { member, .. } => self.claimed(member),
            LinkEvent::Taken { member, name } => {
                self.refuse_claim(member, JoinError::NameTaken(name));
            }
            LinkEvent::Refused { member, what } => self.refused(member, what),
            LinkEvent::Joined {
                member, history, ..
            } => self.joined(&member, &history),
            LinkEvent::Said { member, lines, .. } => {
                let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
                let cut = self.room.relay_said(&member.name, &texts);
                self.leave_cut(&cut);
            }
            LinkEvent::Whispered { from, to, text, .. } => {
                let line = Reply::Private {
                    from: &from.name,
                    text: &text,
                }
                .encode();
                self.tell(to.id, &line, false);
            }
            LinkEvent::NotFound { from, target, .. } => {
                self.tell(from, &Reply::UserNotFound(&target).encode(), false);
            }
            LinkEvent::Left { member, .. } => self.left(&member),
            LinkEvent::List { member, names } => {
                let names: Vec<&str> = names.iter().map(|name| &**name).collect();
                self.tell(member, &Reply::UserList(&names).encode(), true);
            }
            LinkEvent::Barrier { member, token } => self.barrier(member, token),
            LinkEvent::Fatal { reason } => self.fatal(reason),
        }
    }

    /// The name is this node's member's in the whole room: it joins (the
    /// join's turn in the stream decides where its welcome goes).
    fn claimed(&self, member: u64) {
        if !self.members.lock().contains_key(&member) {
            // Its connection ended meanwhile; its leave frees the name.
            return;
        }
        let asked = self.requests.get().map(|r| r.join(member));
        if let Some(Ok(())) = asked {
            return;
        }
        self.refuse_claim(member, JoinError::Unavailable);
        if let Some(requests) = self.requests.get() {
            let _ = requests.leave(member);
        }
    }

    /// The claim of `member` failed: its session asks for a name again.
    fn refuse_claim(&self, member: u64, why: JoinError) {
        let local = self.members.lock().remove(&member);
        if let Some(ticket) = local.and_then(|local| local.ticket) {
            ticket.resolve(Err(why));
        }
    }

    fn refused(&self, member: u64, what: Refusal) {
        match what {
            Refusal::Claim | Refusal::Join => {
                self.refuse_claim(member, JoinError::Unavailable);
            }
            Refusal::Lines(n) => self.unavailable(member, n),
            Refusal::Whisper => self.unavailable(member, 1),
        }
    }

    /// A join in the room's order: for a member of this node, its welcome,
    /// its history and its join notice; for another's, the notice.
    fn joined(&self, member: &Member, history: &[HistoryLine]) {
        let local = if self.is_mine(member) {
            let members = self.members.lock();
            members
                .get(&member.id)
                .filter(|local| local.ticket.is_some())
                .map(|local| (local.outbox.clone(), local.ticket.clone()))
        } else {
            None
        };
        let Some((outbox, Some(ticket))) = local else {
            let cut = self.room.relay_joined(&member.name);
            self.leave_cut(&cut);
            return;
        };
        let mut replay = bytes::BytesMut::new();
        for line in history {
            Reply::Public {
                from: &line.name,
                text: &line.text,
            }
            .encode_into(&mut replay);
        }
        let id = MemberId(member.id);
        match self.room.relay_join(id, &member.name, outbox, &replay) {
            Ok(cut) => {
                if let Some(local) = self.members.lock().get_mut(&member.id) {
                    local.ticket = None;
                }
                ticket.resolve(Ok(()));
                self.leave_cut(&cut);
            }
            Err(error) => {
                // Its connection is closing: it leaves the room at once.
                self.members.lock().remove(&member.id);
                ticket.resolve(Err(error));
                self.leave_cut(&[id]);
            }
        }
        log::debug!("member {id} joined the room");
    }

    /// A leave in the room's order. A member of this node is removed first,
    /// and its outbox closed.
    fn left(&self, member: &Member) {
        let mine = self.is_mine(member) && self.members.lock().remove(&member.id).is_some();
        let id = mine.then_some(MemberId(member.id));
        let cut = self.room.relay_left(id, &member.name);
        self.leave_cut(&cut);
    }

    fn barrier(&self, member: u64, token: u64) {
        if token == DRAIN_TOKEN {
            *self.drained.lock() = true;
            self.drained_cond.notify_all();
            return;
        }
        let reply = self.replies.lock().remove(&token);
        if let Some((to, line)) = reply {
            debug_assert_eq!(to, member);
            self.tell(to, &line, false);
        }
    }

    fn fatal(&self, reason: String) {
        log::error!("the room link failed: {reason}");
        let hook = {
            let mut fatal = self.fatal.lock();
            fatal.reason = Some(reason.clone());
            fatal.hook.take()
        };
        if let Some(hook) = hook {
            hook(&reason);
        }
    }
}
