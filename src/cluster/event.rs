//! What a [`RoomLink`](super::RoomLink) tells its node: the room's events in
//! the stream's order, and the completions of what the node asked.

use std::sync::Arc;

use super::names::NodeId;
pub use super::wire::LeaveReason;

/// A member of the room, on whichever node it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node that serves it.
    pub node: NodeId,
    /// Its id on that node (the node's own member id).
    pub id: u64,
    /// Its name, as it registered.
    pub name: Arc<str>,
}

/// A public line replayed to a joining member (`--history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// Who said it.
    pub name: Arc<str>,
    /// What was said.
    pub text: Arc<str>,
}

/// What the room refused to take from a member of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// That many public lines (each gets the sender `Message not sent: the
    /// room is unavailable.`).
    Lines(usize),
    /// A whisper (it gets the same line).
    Whisper,
    /// The join: the member is not in the room and its name is released.
    Join,
    /// The name claim could not be decided (NATS did not answer in time).
    Claim,
}

/// One event from a [`RoomLink`](super::RoomLink) to its node.
///
/// The room's events (`Joined`, `Said`, `Whispered`, `NotFound`, `Left`)
/// carry the stream sequence that orders them, come in that order, and each
/// comes once. The replies to this node's requests (`List`, `Barrier`,
/// `Refused`) come in that same order too: after the events of the
/// member's earlier lines. Name claims (`Claimed`, `Taken`) come when
/// decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A member joined. `history` holds, for a member of this node only, up
    /// to [`LinkConfig::history`](super::LinkConfig::history) public lines
    /// that came just before this join, oldest first.
    Joined {
        /// The stream sequence.
        seq: u64,
        /// Who joined.
        member: Member,
        /// Its replay (empty for members of other nodes).
        history: Vec<HistoryLine>,
    },
    /// A member said public lines, in this order.
    Said {
        /// The stream sequence of the batch that carried them.
        seq: u64,
        /// Who said them.
        member: Member,
        /// The lines.
        lines: Vec<String>,
    },
    /// A whisper to a member of this node.
    Whispered {
        /// The stream sequence.
        seq: u64,
        /// Who sent it.
        from: Member,
        /// Its target, a member of this node.
        to: Member,
        /// The text.
        text: String,
    },
    /// A whisper sent by a member of this node found nobody of that name
    /// when its turn came in the room's order.
    NotFound {
        /// The stream sequence.
        seq: u64,
        /// The sender (a member of this node).
        from: u64,
        /// The target as the sender typed it.
        target: String,
    },
    /// A member left; its name is free.
    Left {
        /// The stream sequence.
        seq: u64,
        /// Who left.
        member: Member,
        /// Why.
        reason: LeaveReason,
    },
    /// A member of this node now holds its name in the whole room; it may
    /// [`join`](super::RoomLink::join).
    Claimed {
        /// The member.
        member: u64,
        /// The name, as it asked for it.
        name: String,
    },
    /// The name is someone else's.
    Taken {
        /// The member.
        member: u64,
        /// The name, as it asked for it.
        name: String,
    },
    /// The room could not take what a member of this node sent.
    Refused {
        /// The member.
        member: u64,
        /// What was refused.
        what: Refusal,
    },
    /// The reply to [`RoomLink::list`](super::RoomLink::list): the whole
    /// room's names in join order, as of the member's earlier lines.
    List {
        /// The member that asked.
        member: u64,
        /// The names.
        names: Vec<Arc<str>>,
    },
    /// [`RoomLink::barrier`](super::RoomLink::barrier) reached: every earlier
    /// request of this member has been applied.
    Barrier {
        /// The member.
        member: u64,
        /// The token it was given.
        token: u64,
    },
    /// This node must stop serving and exit with status 1 (it was cut off
    /// from NATS for too long, or it lost events). Nothing comes after it.
    Fatal {
        /// Why, for the log.
        reason: String,
    },
}

/// Where a [`RoomLink`](super::RoomLink) sends its [`LinkEvent`]s.
///
/// It is called on the link's bridge thread, one event at a time, in order.
/// It must be quick and must not block (push into outboxes, a channel, wake
/// an event loop): while it runs, the link reads nothing from NATS and
/// sends no heartbeat. It may call the link's request methods (they never
/// block), but must not close or drop the link.
pub trait LinkSink: Send + 'static {
    /// Takes one event.
    fn deliver(&mut self, event: LinkEvent);
}

impl<F: FnMut(LinkEvent) + Send + 'static> LinkSink for F {
    fn deliver(&mut self, event: LinkEvent) {
        self(event)
    }
}
