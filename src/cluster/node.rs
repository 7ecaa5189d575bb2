//! [`ClusterRoom`]: a server as one node of a room across servers, the
//! [`RoomBackend`] that wires a [`RoomLink`] into a local [`ChatRoom`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::link::{LinkError, LinkRequests, RoomLink};
use super::names::NodeId;
use super::sink::{in_sink, NodeSink};
use super::LinkConfig;
use crate::outbox::Outbox;
use crate::protocol::{validate_name, Reply};
use crate::room::{Claim, JoinError, JoinTicket, MemberId, Room, RoomBackend, RoomError};
use crate::ChatRoom;

/// How long a shutdown waits for this node's lines on their way through the
/// stream to come back to its members, before it closes the local room.
const DRAIN: Duration = Duration::from_secs(2);

/// The barrier token of the shutdown's drain (member tokens count up from
/// 1).
pub(super) const DRAIN_TOKEN: u64 = 0;

/// A server as one node of a room shared by several servers through NATS
/// JetStream: a [`RoomBackend`] for [`Server::with_room`](crate::Server::with_room).
///
/// It is a local [`ChatRoom`] (this server's members; it renders each of
/// the room's events once and fans it out through its room log, as a
/// single server does) fed by a [`RoomLink`] in the stream's one order.
/// Members of other nodes are not registered locally: events carry their
/// names. A local member's lines go to the link, and come back through the
/// stream like everyone's, so that every node sees one order. Its replies
/// (`\list`, `\help`, errors) wait for its earlier lines to come back.
///
/// ```no_run
/// use std::time::Duration;
/// use chatcore::cluster::{ClusterRoom, LinkConfig, RoomName};
/// use chatcore::{Server, ServerConfig, TcpTransport};
///
/// let mut config = LinkConfig::new("nats://127.0.0.1:4222", RoomName::new("lobby")?);
/// config.history = 20; // replay the room's last 20 public lines to newcomers
/// let node = ClusterRoom::connect(config)?; // fails if NATS cannot be reached
/// let server = Server::with_room(
///     TcpTransport::bind("127.0.0.1:12345")?,
///     ServerConfig::default(),
///     node.clone(),
/// );
/// // Cut off from NATS for too long: shut down (and exit with an error).
/// let shutdown = server.shutdown_handle();
/// node.on_fatal(move |_reason| shutdown.trigger());
/// server.run_event_loops(0)?;
/// // Announces the leaves of the members still here, frees their names.
/// node.close_link(Duration::from_secs(5))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterRoom {
    node: Arc<Node>,
    /// The link, until [`ClusterRoom::close_link`] takes it.
    link: Mutex<Option<RoomLink>>,
}

/// What the node's sessions and its link's sink share.
pub(super) struct Node {
    pub(super) room: Arc<ChatRoom>,
    /// This node's id, once the link is up (events before it concern no
    /// member of this node).
    pub(super) me: OnceLock<NodeId>,
    pub(super) requests: OnceLock<LinkRequests>,
    /// This node's members by id: claims under way, and members joined.
    pub(super) members: Mutex<HashMap<u64, Local>>,
    /// The session's replies waiting for their barrier: token to member
    /// and line.
    pub(super) replies: Mutex<HashMap<u64, (u64, Bytes)>>,
    next_token: AtomicU64,
    /// Shutdown has begun.
    closed: AtomicBool,
    /// The shutdown's drain is over.
    pub(super) drained: Mutex<bool>,
    pub(super) drained_cond: Condvar,
    pub(super) fatal: Mutex<Fatal>,
}

/// A member of this node.
pub(super) struct Local {
    pub(super) outbox: Arc<Outbox>,
    /// Its claim's ticket, until it has joined.
    pub(super) ticket: Option<Arc<JoinTicket>>,
}

/// What [`ClusterRoom::on_fatal`] calls.
pub(super) type FatalHook = Box<dyn FnOnce(&str) + Send>;

/// Whether the link has failed, and who to tell.
#[derive(Default)]
pub(super) struct Fatal {
    pub(super) reason: Option<String>,
    pub(super) hook: Option<FatalHook>,
}

impl ClusterRoom {
    /// Connects to the room on NATS ([`RoomLink::connect`]: blocks until the
    /// room's stream is read back, or fails within about
    /// [`LinkConfig::connect_timeout`] when NATS cannot be reached).
    pub fn connect(config: LinkConfig) -> Result<Arc<ClusterRoom>, LinkError> {
        let node = Arc::new(Node {
            room: Arc::new(ChatRoom::relayed()),
            me: OnceLock::new(),
            requests: OnceLock::new(),
            members: Mutex::default(),
            replies: Mutex::default(),
            next_token: AtomicU64::new(DRAIN_TOKEN + 1),
            closed: AtomicBool::new(false),
            drained: Mutex::new(false),
            drained_cond: Condvar::new(),
            fatal: Mutex::default(),
        });
        let link = RoomLink::connect(config, NodeSink(node.clone()))?;
        let _ = node.me.set(link.node().clone());
        let _ = node.requests.set(link.requests());
        Ok(Arc::new(ClusterRoom {
            node,
            link: Mutex::new(Some(link)),
        }))
    }

    /// This node's id in the room.
    pub fn node_id(&self) -> Option<&NodeId> {
        self.node.me.get()
    }

    /// Calls `hook` (once, with the reason) when the link fails for good:
    /// cut off from NATS for longer than [`LinkConfig::give_up_after`], or
    /// events lost. The node then serves no more: shut the server down
    /// (and exit with an error). Called at once if it has failed already;
    /// otherwise on the link's thread, so it must not block.
    pub fn on_fatal(&self, hook: impl FnOnce(&str) + Send + 'static) {
        let mut fatal = self.node.fatal.lock();
        match fatal.reason.clone() {
            Some(reason) => {
                drop(fatal);
                hook(&reason);
            }
            None => fatal.hook = Some(Box::new(hook)),
        }
    }

    /// Why the link failed, if it has.
    pub fn fatal_reason(&self) -> Option<String> {
        self.node.fatal.lock().reason.clone()
    }

    /// Says goodbye to the room, after the server has stopped: the leaves of
    /// the members still here are published and their names freed
    /// ([`RoomLink::close`], at most `timeout`). Without it (or when it
    /// fails) the other nodes announce them once this node's heartbeat has
    /// stood still for [`LinkConfig::dead_after`].
    pub fn close_link(&self, timeout: Duration) -> Result<(), LinkError> {
        let link = self.link.lock().take();
        match link {
            Some(link) => link.close(timeout),
            None => Err(LinkError::Stopped),
        }
    }

    fn requests(&self) -> Option<&LinkRequests> {
        self.node.requests.get()
    }

    /// Forgets a claim that never joined, and gives the answer.
    fn drop_claim(&self, id: MemberId, answer: JoinError) -> Claim {
        self.node.members.lock().remove(&id.get());
        Claim::Refused(answer)
    }
}

impl RoomBackend for ClusterRoom {
    fn local(&self) -> &Arc<ChatRoom> {
        &self.node.room
    }

    fn claim(&self, name: &str, outbox: &Arc<Outbox>) -> Claim {
        if let Err(error) = validate_name(name) {
            return Claim::Refused(error.into());
        }
        if self.node.closed.load(Ordering::SeqCst) {
            return Claim::Refused(JoinError::Closed);
        }
        let id = self.node.room.reserve_id();
        let ticket = JoinTicket::new(id, outbox);
        self.node.members.lock().insert(
            id.get(),
            Local {
                outbox: outbox.clone(),
                ticket: Some(ticket.clone()),
            },
        );
        match self.requests().map(|r| r.claim(id.get(), name)) {
            Some(Ok(())) => Claim::Pending(ticket),
            _ => self.drop_claim(id, JoinError::Unavailable),
        }
    }

    fn say(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError> {
        if self.node.closed.load(Ordering::SeqCst) {
            return Err(RoomError::Closed);
        }
        let lines = texts.iter().map(|text| (*text).to_owned()).collect();
        match self.requests().map(|r| r.say(from.get(), lines)) {
            Some(Ok(())) => Ok(()),
            _ => Err(RoomError::Unavailable(texts.len())),
        }
    }

    fn whisper(&self, from: MemberId, target: &str, text: &str) -> Result<(), RoomError> {
        if self.node.closed.load(Ordering::SeqCst) {
            return Err(RoomError::Closed);
        }
        match self.requests().map(|r| r.whisper(from.get(), target, text)) {
            Some(Ok(())) => Ok(()),
            _ => Err(RoomError::Unavailable(1)),
        }
    }

    fn list(&self, from: MemberId, _outbox: &Arc<Outbox>) -> Result<(), RoomError> {
        if self.node.closed.load(Ordering::SeqCst) {
            return Err(RoomError::Closed);
        }
        match self.requests().map(|r| r.list(from.get())) {
            Some(Ok(())) => Ok(()),
            _ => Err(RoomError::Unavailable(1)),
        }
    }

    fn reply(&self, from: MemberId, outbox: &Arc<Outbox>, line: Bytes) -> Result<(), RoomError> {
        let token = self.node.next_token.fetch_add(1, Ordering::Relaxed);
        self.node
            .replies
            .lock()
            .insert(token, (from.get(), line.clone()));
        if let Some(Ok(())) = self.requests().map(|r| r.barrier(from.get(), token)) {
            return Ok(());
        }
        // The link takes nothing more: say it now.
        self.node.replies.lock().remove(&token);
        let _ = outbox.push(&line);
        Ok(())
    }

    fn leave(&self, id: MemberId, outbox: &Arc<Outbox>) {
        let joined = {
            let mut members = self.node.members.lock();
            match members.get(&id.get()) {
                // A claim under way, or claimed and not joined yet: it was
                // never in this node's room (its join, if it is published,
                // is relayed like another node's).
                Some(local) if local.ticket.is_some() => {
                    members.remove(&id.get());
                    false
                }
                Some(_) => true,
                None => false,
            }
        };
        let asked = self.requests().map(|r| r.leave(id.get()));
        if !joined {
            outbox.close();
            return;
        }
        if let Some(Ok(())) = asked {
            // The outbox closes when the leave comes back from the stream.
            return;
        }
        // The leave cannot be published (the link has stopped, or its queue
        // is full): out of this node's room without a notice; the others
        // announce it with this node's other members once it is gone.
        log::warn!("member {id}: its leave could not be given to the room");
        self.node.members.lock().remove(&id.get());
        self.node.room.relay_remove(id);
        outbox.close();
    }

    fn close(&self, last: &Bytes) {
        if self.node.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Claims under way: the server is shutting down.
        let pending: Vec<Arc<JoinTicket>> = self
            .node
            .members
            .lock()
            .values()
            .filter_map(|local| local.ticket.clone())
            .collect();
        for ticket in pending {
            ticket.resolve(Err(JoinError::Closed));
        }
        self.drain();
        self.node.room.close(last);
    }
}

impl ClusterRoom {
    /// Waits (at most [`DRAIN`]) until what this node sent before has come
    /// back from the stream, so that its members get their own last lines
    /// before `Server is shutting down.` Not on the link's own thread (a
    /// shutdown from the fatal hook), and not once the link has failed.
    fn drain(&self) {
        if in_sink() || self.node.fatal.lock().reason.is_some() {
            return;
        }
        let Some(Ok(())) = self.requests().map(|r| r.barrier(0, DRAIN_TOKEN)) else {
            return;
        };
        let deadline = Instant::now() + DRAIN;
        let mut drained = self.node.drained.lock();
        while !*drained {
            if self
                .node
                .drained_cond
                .wait_until(&mut drained, deadline)
                .timed_out()
            {
                log::warn!("shutdown: lines on their way through the room did not all come back");
                return;
            }
        }
    }
}

impl Node {
    /// Pushes `line` to a member of this node (after all the room sent it
    /// before); a member it overflows leaves.
    pub(super) fn tell(&self, member: u64, line: &[u8], reply: bool) {
        let cut = self.room.relay_private(MemberId(member), line, reply);
        self.leave_cut(&cut);
    }

    /// Publishes the leaves of members cut as slow consumers.
    pub(super) fn leave_cut(&self, cut: &[MemberId]) {
        let Some(requests) = self.requests.get() else {
            return;
        };
        for id in cut {
            if requests.leave(id.get()).is_err() {
                log::warn!("member {id}: its leave could not be given to the room");
            }
        }
    }

    /// `Message not sent: the room is unavailable.` to a member, `n` times.
    pub(super) fn unavailable(&self, member: u64, n: usize) {
        let line = Reply::Unavailable.encode();
        for _ in 0..n {
            self.tell(member, &line, false);
        }
    }
}

impl fmt::Debug for ClusterRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRoom")
            .field("node", &self.node.me.get())
            .field("members", &self.node.members.lock().len())
            .field("closed", &self.node.closed.load(Ordering::SeqCst))
            .field("fatal", &self.node.fatal.lock().reason)
            .finish()
    }
}

impl From<Arc<ClusterRoom>> for Room {
    fn from(room: Arc<ClusterRoom>) -> Room {
        Room::backend(room)
    }
}
