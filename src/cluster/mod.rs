//! One room across several servers, through NATS JetStream (the `nats`
//! feature).
//!
//! [`ClusterRoom`] makes a [`Server`](crate::Server) one node of such a room
//! (see its example): a [`RoomBackend`](crate::room::RoomBackend) made of a
//! local [`ChatRoom`](crate::ChatRoom), which renders and fans out to this
//! server's members exactly as a single server does, and the [`RoomLink`]
//! described below, whose events it applies to that local room in the
//! stream's order. The rest of this page is about the link.
//!
//! A [`RoomLink`] makes one server a node of a room shared by every server
//! linked to the same NATS server and room name. The rest of the crate stays
//! synchronous: the link runs the `async-nats` client on a tokio runtime on
//! its own bridge thread; the node asks it things through a bounded queue
//! ([`RoomLink::say`], [`RoomLink::claim`], ... return at once) and hears
//! back through a [`LinkSink`] that the bridge thread calls with
//! [`LinkEvent`]s. Nothing the node calls waits for the network, except
//! [`RoomLink::connect`] and [`RoomLink::close`] at the ends of its life.
//!
//! # What lives on NATS
//!
//! For a room `lobby`:
//!
//! - the stream `CHATCORE_lobby`, the room's one order. Its subjects:
//!   `chatcore.lobby.p` (batches of public lines), `chatcore.lobby.w`
//!   (whispers, with their target) and `chatcore.lobby.m.<node>.<member>`
//!   (one member's join, then its leave). Each subject keeps its latest
//!   [`LinkConfig::keep_messages`] messages, so the latest public lines (the
//!   history) and every current member's join stay in the stream, and
//!   outlive every node.
//! - the key-value bucket `chatcore_lobby_names`: one key per claimed name
//!   (`n` and the hex of its Unicode lowercase UTF-8), claimed with an
//!   atomic create-if-absent, so of two nodes claiming one name at once
//!   exactly one wins. Its value says which node and member hold it.
//! - the key-value bucket `chatcore_lobby_nodes`: each node's heartbeat,
//!   rewritten every [`LinkConfig::heartbeat`].
//!
//! # How a line travels
//!
//! 1. A member of node A sends lines; A's session calls [`RoomLink::say`].
//!    The bridge's publisher takes every request queued since its last
//!    publish, and puts consecutive lines, of any of A's members, into one
//!    stream message (the batching that makes millions of deliveries per
//!    second possible). It publishes one message at a time, each with a
//!    `Nats-Msg-Id` of A's id and a counter, and retries it under that same
//!    id until JetStream acknowledges it: a retry whose first try was stored
//!    after all is dropped as a duplicate, and nothing of A's overtakes
//!    anything of A's earlier, so each sender's order holds, whispers
//!    included.
//! 2. The stream gives the message its sequence: its place in the room's
//!    one order.
//! 3. Every node, A included, reads the whole stream with one ordered
//!    consumer (a pull consumer that the link recreates from the next
//!    sequence after any reconnect, gap or error), applies each message to
//!    its roster in sequence order, exactly once, and hands the resulting
//!    events to its sink: [`LinkEvent::Said`] for each member's lines.
//! 4. The node pushes them into its local members' outboxes, as a single
//!    server does.
//!
//! Joins, leaves and whispers take the same path. A whisper's target is
//! decided when the whisper's turn comes in the stream, from the roster of
//! that moment, which is the same on every node: the target's node delivers
//! it ([`LinkEvent::Whispered`]), or, if nobody has that name, the sender's
//! node answers [`LinkEvent::NotFound`].
//!
//! # `\list`, history and replies
//!
//! The roster (who is in the room, in join order) is derived from the
//! stream's events as each node applies them, not read from the names
//! bucket: it needs no round trip, it is the same on every node at the same
//! sequence, and it matches the notices members read (a member leaves the
//! list exactly where its leave notice is). A node that starts reads the
//! stream from its first retained message, which holds every current
//! member's join (see the subjects above), before it serves anyone.
//!
//! [`RoomLink::list`] and [`RoomLink::barrier`] go through the publisher's
//! queue like lines: their answer comes once the member's earlier lines
//! have come back from the stream, so a reply never overtakes them.
//!
//! The history a joiner is replayed is the last [`LinkConfig::history`]
//! public lines before its join in the room's order, taken from the roster
//! when the join is applied ([`LinkEvent::Joined`]'s `history`): exact, and
//! with no round trip. Since each node read the stream at its start, those
//! lines can be older than every running node.
//!
//! # Liveness
//!
//! Each node rewrites its heartbeat key every [`LinkConfig::heartbeat`]. A
//! node cut off from NATS for [`LinkConfig::give_up_after`] (5 s: a
//! heartbeat left unanswered that long, with no other answer meanwhile)
//! considers itself dead: its sink gets [`LinkEvent::Fatal`] and it stops
//! delivering. Every node polls the heartbeats; one whose key has not
//! changed (or that has had no key while it serves members) for
//! [`LinkConfig::dead_after`] (7 s) of the poller's own clock, while the
//! poller itself kept reading the heartbeats, is dead: the poller publishes
//! a leave for each of its members, each with a `Nats-Msg-Id` made of the
//! dead node and the member (the id that node's own leave would have used),
//! so several survivors cause one notice each, then frees their names and
//! removes the dead node's heartbeat. Since 7 s exceeds 5 s plus two
//! heartbeats, a node is announced only after it has stopped serving; with
//! the default timings the announcement comes about 7 to 8.5 s after the
//! death.
//!
//! # Failures
//!
//! - NATS unreachable at start: [`RoomLink::connect`] fails within
//!   [`LinkConfig::connect_timeout`].
//! - A publish that JetStream refuses (the stream or the server's storage
//!   full): [`LinkEvent::Refused`] for each member whose request it held.
//! - A short outage: publishes are retried and the consumer recreated; lines
//!   wait, none is lost, nobody is announced.
//! - A longer one: [`LinkEvent::Fatal`].

mod bridge;
mod claims;
mod event;
mod link;
mod liveness;
mod names;
mod node;
mod publisher;
mod reader;
mod roster;
mod setup;
mod sink;
mod wire;

use std::time::Duration;

pub use event::{HistoryLine, LeaveReason, LinkEvent, LinkSink, Member, Refusal};
pub use link::{LinkError, RoomLink};
pub use names::{NodeId, RoomName, RoomNameError, MAX_ROOM_CHARS};
pub use node::ClusterRoom;

/// How a [`RoomLink`] reaches NATS and how it judges time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The room.
    pub room: RoomName,
    /// How many public lines a joining member is replayed (0: none).
    pub history: usize,
    /// How many messages each of the stream's subjects keeps (the history's
    /// lines come from the latest of them; a node that falls this many
    /// messages behind the stream has lost events and stops). Raised to at
    /// least `history` when the stream is made.
    pub keep_messages: i64,
    /// The stream's size limit in bytes (-1: none but the server's). When it
    /// is reached, publishes are refused ([`LinkEvent::Refused`]).
    pub max_bytes: i64,
    /// How often the node rewrites its heartbeat and polls the others'.
    pub heartbeat: Duration,
    /// How long another node's heartbeat must stand still before it is
    /// announced dead. Must exceed `give_up_after` plus twice `heartbeat`.
    pub dead_after: Duration,
    /// How long this node may be cut off from NATS (a heartbeat left
    /// unanswered, and no other answer meanwhile) before it considers
    /// itself dead ([`LinkEvent::Fatal`]).
    pub give_up_after: Duration,
    /// The bound on reaching NATS and setting up the stream and buckets at
    /// start.
    pub connect_timeout: Duration,
    /// The bound on reading the stream back at start.
    pub replay_timeout: Duration,
    /// The most bytes of lines in one stream message.
    pub max_batch_bytes: usize,
    /// How many requests may wait for the bridge ([`LinkError::Busy`] past
    /// it).
    pub queue: usize,
}

impl LinkConfig {
    /// The defaults for a room on the NATS server at `url`: no history,
    /// 100,000 messages kept per subject, no byte limit, heartbeat every
    /// 500 ms, dead after 7 s, giving up after 5 s, 8 s to connect, 64 KiB
    /// batches, 65,536 queued requests.
    pub fn new(url: impl Into<String>, room: RoomName) -> Self {
        LinkConfig {
            url: url.into(),
            room,
            history: 0,
            keep_messages: 100_000,
            max_bytes: -1,
            heartbeat: Duration::from_millis(500),
            dead_after: Duration::from_secs(7),
            give_up_after: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(8),
            replay_timeout: Duration::from_secs(60),
            max_batch_bytes: 64 * 1024,
            queue: 65_536,
        }
    }
}
