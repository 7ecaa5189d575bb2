//! [`RoomLink`]: the synchronous handle on one node's bridge thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::bridge::{self, Command, Control};
use super::event::LinkSink;
use super::names::{NodeId, RoomName};
use super::LinkConfig;

/// Why a [`RoomLink`] could not start or take a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// NATS could not be reached, or the stream or buckets set up.
    #[error("cannot use NATS at {url}: {reason}")]
    Connect {
        /// The server's address as configured.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration cannot work.
    #[error("invalid room link configuration: {0}")]
    Config(&'static str),
    /// The bridge thread could not be started.
    #[error("cannot start the NATS bridge thread")]
    Thread(#[source] std::io::Error),
    /// The request queue is full: the room is not keeping up.
    #[error("the room's request queue is full")]
    Busy,
    /// The link has stopped (after [`LinkEvent::Fatal`](super::LinkEvent::Fatal)).
    #[error("the room link has stopped")]
    Stopped,
    /// The goodbye did not finish in time; the others will announce this
    /// node's remaining members as for a dead node.
    #[error("closing the room link timed out")]
    CloseTimedOut,
}

/// One node of a room on NATS JetStream. See the [module docs](super).
///
/// Member ids are the node's own (`u64`, unique on this node). A member's
/// life: [`claim`](Self::claim) its name; on
/// [`Claimed`](super::LinkEvent::Claimed), [`join`](Self::join); then
/// [`say`](Self::say), [`whisper`](Self::whisper), [`list`](Self::list);
/// finally [`leave`](Self::leave) (also after a claim that never joined, to
/// free the name).
///
/// Dropping a link without [`close`](Self::close) is a crash as far as the
/// room is concerned: it stops at once, says no goodbye, and the other
/// nodes announce its members once its heartbeat has stood still for
/// [`LinkConfig::dead_after`].
#[derive(Debug)]
pub struct RoomLink {
    node: NodeId,
    room: RoomName,
    requests: LinkRequests,
    control: Option<oneshot::Sender<Control>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RoomLink {
    /// Connects to NATS, sets up the room's stream and buckets, reads the
    /// stream back (roster and history), and starts the bridge thread that
    /// calls `sink`. Blocks until then: at most about
    /// [`LinkConfig::connect_timeout`] when NATS cannot be reached.
    pub fn connect(config: LinkConfig, sink: impl LinkSink) -> Result<RoomLink, LinkError> {
        if config.dead_after <= config.give_up_after + config.heartbeat * 2 {
            // Else a node could be announced while it still serves: its last
            // stored heartbeat and its first unanswered one can each be a
            // heartbeat away from the cut.
            return Err(LinkError::Config(
                "dead_after must exceed give_up_after plus twice heartbeat",
            ));
        }
        if config.heartbeat.is_zero() {
            return Err(LinkError::Config("heartbeat must not be zero"));
        }
        let node = NodeId::random();
        let (commands, command_rx) = mpsc::channel(config.queue.max(1));
        let (control, control_rx) = oneshot::channel();
        let (started_tx, started_rx) = std_mpsc::sync_channel(1);
        let stopped = Arc::new(AtomicBool::new(false));
        let bound = config.connect_timeout + config.replay_timeout + Duration::from_secs(1);
        let url = config.url.clone();
        let room = config.room.clone();
        let parts = bridge::Parts {
            config,
            node: node.clone(),
            sink: Box::new(sink),
            commands: command_rx,
            own_commands: commands.clone(),
            control: control_rx,
            started: started_tx,
            stopped: stopped.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("chatcore-nats-{room}"))
            .spawn(move || bridge::run(parts))
            .map_err(LinkError::Thread)?;
        let outcome = match started_rx.recv_timeout(bound) {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("not ready within {} s", bound.as_secs())),
        };
        let link = RoomLink {
            node,
            room,
            requests: LinkRequests { commands, stopped },
            control: Some(control),
            thread: Some(thread),
        };
        match outcome {
            Ok(()) => Ok(link),
            Err(reason) => Err(LinkError::Connect { url, reason }), // link drops: bridge ends
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The room.
    pub fn room(&self) -> &RoomName {
        &self.room
    }

    /// The request half of the link, for a sink that must ask things of
    /// it (a sink must not own the link itself: dropping the link joins the
    /// bridge thread the sink runs on).
    pub(crate) fn requests(&self) -> LinkRequests {
        self.requests.clone()
    }

    /// Asks for `name` in the whole room for `member`: answered by
    /// [`Claimed`](super::LinkEvent::Claimed),
    /// [`Taken`](super::LinkEvent::Taken) or
    /// [`Refused`](super::LinkEvent::Refused). The name's validity is the
    /// caller's business (any text can be claimed).
    pub fn claim(&self, member: u64, name: &str) -> Result<(), LinkError> {
        self.requests.claim(member, name)
    }

    /// Publishes `member`'s join, under the name it claimed. Its
    /// [`Joined`](super::LinkEvent::Joined) carries its history.
    pub fn join(&self, member: u64) -> Result<(), LinkError> {
        self.requests.join(member)
    }

    /// Publishes public lines of `member`, in this order (several lines read
    /// together are best given together).
    pub fn say(&self, member: u64, lines: Vec<String>) -> Result<(), LinkError> {
        self.requests.say(member, lines)
    }

    /// Publishes a whisper from `member` to the member named `target`
    /// (matched without regard to case when its turn comes).
    pub fn whisper(&self, member: u64, target: &str, text: &str) -> Result<(), LinkError> {
        self.requests.whisper(member, target, text)
    }

    /// Publishes `member`'s leave (if it joined) and then frees its name.
    pub fn leave(&self, member: u64) -> Result<(), LinkError> {
        self.requests.leave(member)
    }

    /// Asks for the room's names: [`List`](super::LinkEvent::List), after
    /// `member`'s earlier requests have come back from the stream.
    pub fn list(&self, member: u64) -> Result<(), LinkError> {
        self.requests.list(member)
    }

    /// [`Barrier`](super::LinkEvent::Barrier) with `token`, after `member`'s
    /// earlier requests have come back from the stream (for replies that
    /// must not overtake them, such as `\help`).
    pub fn barrier(&self, member: u64, token: u64) -> Result<(), LinkError> {
        self.requests.barrier(member, token)
    }

    /// Says goodbye: finishes every queued request, publishes the leave of
    /// each member still joined, frees their names and removes this node's
    /// heartbeat; then stops. Blocks for at most `timeout`.
    pub fn close(mut self, timeout: Duration) -> Result<(), LinkError> {
        let (done_tx, done_rx) = std_mpsc::sync_channel(1);
        let Some(control) = self.control.take() else {
            return Err(LinkError::Stopped);
        };
        if control.send(Control::Close(done_tx)).is_err() {
            return Err(LinkError::Stopped);
        }
        match done_rx.recv_timeout(timeout) {
            Ok(true) => Ok(()),
            Ok(false) => Err(LinkError::Stopped),
            Err(_) => Err(LinkError::CloseTimedOut),
        }
    }
}

impl Drop for RoomLink {
    fn drop(&mut self) {
        // Dropping the control sender tells the bridge to stop at once.
        drop(self.control.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("room {}: the NATS bridge thread panicked", self.room);
            }
        }
    }
}

/// The request half of a [`RoomLink`]: what [`RoomLink::claim`] and its
/// siblings send through, without the bridge thread's handle.
#[derive(Debug, Clone)]
pub(crate) struct LinkRequests {
    commands: mpsc::Sender<Command>,
    stopped: Arc<AtomicBool>,
}

impl LinkRequests {
    fn send(&self, command: Command) -> Result<(), LinkError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(LinkError::Stopped);
        }
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Busy,
            mpsc::error::TrySendError::Closed(_) => LinkError::Stopped,
        })
    }

    /// See [`RoomLink::claim`].
    pub(crate) fn claim(&self, member: u64, name: &str) -> Result<(), LinkError> {
        self.send(Command::Claim {
            member,
            name: name.to_owned(),
        })
    }

    /// See [`RoomLink::join`].
    pub(crate) fn join(&self, member: u64) -> Result<(), LinkError> {
        self.send(Command::Join { member })
    }

    /// See [`RoomLink::say`].
    pub(crate) fn say(&self, member: u64, lines: Vec<String>) -> Result<(), LinkError> {
        self.send(Command::Say { member, lines })
    }

    /// See [`RoomLink::whisper`].
    pub(crate) fn whisper(&self, member: u64, target: &str, text: &str) -> Result<(), LinkError> {
        self.send(Command::Whisper {
            member,
            target: target.to_owned(),
            text: text.to_owned(),
        })
    }

    /// See [`RoomLink::leave`].
    pub(crate) fn leave(&self, member: u64) -> Result<(), LinkError> {
        self.send(Command::Leave { member })
    }

    /// See [`RoomLink::list`].
    pub(crate) fn list(&self, member: u64) -> Result<(), LinkError> {
        self.send(Command::List { member })
    }

    /// See [`RoomLink::barrier`].
    pub(crate) fn barrier(&self, member: u64, token: u64) -> Result<(), LinkError> {
        self.send(Command::Barrier { member, token })
    }
}
