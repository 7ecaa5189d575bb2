//! The bridge thread: a current-thread tokio runtime that owns the NATS
//! client, and the state its tasks share (the roster, the replies waiting
//! for their turn, the sink).
//!
//! Start-up is in [`super::setup`]. Tasks: the publisher ([`super::publisher`]), the reader
//! ([`super::reader`]), the heartbeat and the dead-node poller
//! ([`super::liveness`]), and one task per name claim ([`super::claims`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, message::PublishMessage};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::event::{LinkEvent, LinkSink, Refusal};
use super::names::NodeId;
use super::roster::Roster;
use super::wire::Record;
use super::LinkConfig;

/// A request from the node, in its order.
#[derive(Debug)]
pub(crate) enum Command {
    Claim {
        member: u64,
        name: String,
    },
    Join {
        member: u64,
    },
    Say {
        member: u64,
        lines: Vec<String>,
    },
    Whisper {
        member: u64,
        target: String,
        text: String,
    },
    Leave {
        member: u64,
    },
    List {
        member: u64,
    },
    Barrier {
        member: u64,
        token: u64,
    },
    /// The goodbye (sent by the bridge itself, after the node's requests);
    /// answered when said.
    Close(oneshot::Sender<()>),
}

/// From the handle to the bridge; dropping the sender stops the bridge.
#[derive(Debug)]
pub(crate) enum Control {
    Close(std_mpsc::SyncSender<bool>),
}

/// What [`run`] needs.
pub(crate) struct Parts {
    pub config: LinkConfig,
    pub node: NodeId,
    pub sink: Box<dyn LinkSink>,
    pub commands: mpsc::Receiver<Command>,
    pub own_commands: mpsc::Sender<Command>,
    pub control: oneshot::Receiver<Control>,
    pub started: std_mpsc::SyncSender<Result<(), String>>,
    pub stopped: Arc<AtomicBool>,
}

/// A reply that waits until the stream has been applied up to a sequence.
#[derive(Debug)]
pub(crate) enum Deferred {
    Refused { member: u64, what: Refusal },
    List { member: u64 },
    Barrier { member: u64, token: u64 },
}

/// A name this node holds for one of its members.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub name: String,
    pub key: String,
    pub revision: u64,
    pub joined: bool,
}

/// What the tasks share, behind one lock. The sink is called under it, so
/// events and replies reach it in one order.
pub(crate) struct State {
    pub roster: Roster,
    /// The last stream sequence applied.
    pub applied: u64,
    /// Whether the start-up read-back is over (events go to the sink).
    pub live: bool,
    /// Replies waiting for `applied` to reach their sequence (ascending).
    pub waiting: VecDeque<(u64, Deferred)>,
    /// The sequence of this node's last acknowledged publish.
    pub published: u64,
    pub sink: Box<dyn LinkSink>,
    pub fatal: bool,
    /// The goodbye has begun: a claim that completes now is released.
    pub closing: bool,
    /// This node's members' names.
    pub claims: HashMap<u64, Claim>,
    /// Members whose claim is under way.
    pub claiming: HashSet<u64>,
    /// Members that left while their claim was under way.
    pub abandoned: HashSet<u64>,
}

impl State {
    /// Hands `event` to the sink, unless the link has failed.
    pub fn emit(&mut self, event: LinkEvent) {
        if !self.fatal {
            self.sink.deliver(event);
        }
    }

    /// Queues a reply behind this node's last publish (or sends it now).
    pub fn defer(&mut self, item: Deferred) {
        if self.published <= self.applied && self.waiting.is_empty() {
            self.release(item);
        } else {
            let at = self.published;
            self.waiting.push_back((at, item));
        }
    }

    fn release(&mut self, item: Deferred) {
        let event = match item {
            Deferred::Refused { member, what } => LinkEvent::Refused { member, what },
            Deferred::List { member } => LinkEvent::List {
                member,
                names: self.roster.names(),
            },
            Deferred::Barrier { member, token } => LinkEvent::Barrier { member, token },
        };
        self.emit(event);
    }

    /// Applies the stream message at `seq` (`None`: unreadable, skipped).
    pub fn apply(&mut self, seq: u64, record: Option<Record>) {
        let events = match record {
            Some(r) => self.roster.apply(seq, r),
            None => Vec::new(),
        };
        self.applied = seq;
        if self.live {
            for e in events {
                self.emit(e);
            }
            while self.waiting.front().is_some_and(|(at, _)| *at <= seq) {
                if let Some((_, item)) = self.waiting.pop_front() {
                    self.release(item);
                }
            }
        }
    }
}

/// Everything the bridge's tasks use.
pub(crate) struct Ctx {
    pub config: LinkConfig,
    pub node: NodeId,
    pub js: jetstream::Context,
    pub stream: String,
    pub prefix: String,
    pub names: kv::Store,
    pub nodes: kv::Store,
    pub state: Mutex<State>,
    /// The last time NATS answered this node.
    pub last_ok: Mutex<Instant>,
    /// When the first heartbeat since NATS last answered was sent: the cut,
    /// if there is one, began no later (see [`super::liveness`]).
    pub asked: Mutex<Option<Instant>>,
    pub failed: AtomicBool,
    /// Shared with the handle: set when the link stops serving.
    pub stopped: Arc<AtomicBool>,
    /// Nodes found dead (their names may be taken over).
    pub dead: Mutex<HashSet<NodeId>>,
    /// Bumped on every (re)connection of the client.
    pub connections: watch::Receiver<u64>,
}

/// Why a reliable publish gave up.
#[derive(Debug)]
pub(crate) enum PublishFailure {
    /// JetStream refused the message.
    Refused(String),
    /// The link has failed or is stopping.
    Stopped,
}

impl Ctx {
    /// NATS answered.
    pub fn ok(&self) {
        *self.last_ok.lock() = Instant::now();
        *self.asked.lock() = None;
    }

    /// A heartbeat is being sent.
    pub fn asking(&self) {
        self.asked.lock().get_or_insert_with(Instant::now);
    }

    /// Whether the link has failed or said goodbye (heartbeats stop).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Stops serving: the sink gets [`LinkEvent::Fatal`] once, then nothing.
    pub fn fail(&self, reason: String) {
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stopped.store(true, Ordering::Release);
        log::error!("room {}: {reason}", self.config.room);
        let mut st = self.state.lock();
        st.emit(LinkEvent::Fatal { reason });
        st.fatal = true;
    }

    /// The subject of a member's join and leave.
    pub fn member_subject(&self, node: &NodeId, member: u64) -> String {
        format!("{}.m.{node}.{member}", self.prefix)
    }

    /// Publishes `payload` until JetStream stores it (or says it is a
    /// duplicate of what it stored), retrying under the same `msg_id`;
    /// returns its stream sequence.
    pub async fn publish(
        &self,
        subject: String,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<u64, PublishFailure> {
        let mut pause = Duration::from_millis(20);
        loop {
            if self.is_failed() {
                return Err(PublishFailure::Stopped);
            }
            let message = PublishMessage::build()
                .payload(payload.clone())
                .message_id(msg_id);
            let outcome = match self.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(ack) => {
                    self.ok();
                    return Ok(ack.sequence);
                }
                Err(e) if is_refusal(&e) => {
                    self.ok(); // JetStream answered
                    return Err(PublishFailure::Refused(e.to_string()));
                }
                Err(e) => log::debug!("room {}: publish retried: {e}", self.config.room),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }
}

/// Whether JetStream itself refused the message (an API error such as
/// storage full), as opposed to not answering.
fn is_refusal(e: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::MaxPayloadExceeded => true,
        K::Other => std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some()),
        _ => false,
    }
}

/// The bridge thread's body.
pub(crate) fn run(parts: Parts) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = parts
                .started
                .send(Err(format!("cannot start a runtime: {e}")));
            return;
        }
    };
    runtime.block_on(serve(parts));
    // Dropping the runtime drops every task and the client: the connection
    // closes with no goodbye unless `serve` said one.
}

async fn serve(parts: Parts) {
    let Parts {
        config,
        node,
        sink,
        commands,
        own_commands,
        mut control,
        started,
        stopped,
    } = parts;
    let connect_timeout = config.connect_timeout;
    let replay_timeout = config.replay_timeout;
    let setup = tokio::time::timeout(
        connect_timeout,
        super::setup::setup(config, node, sink, stopped),
    );
    let ctx = tokio::select! {
        r = setup => match r {
            Ok(Ok(ctx)) => Arc::new(ctx),
            Ok(Err(reason)) => { let _ = started.send(Err(reason)); return; }
            Err(_) => {
                let _ = started.send(Err(format!(
                    "no answer within {} s", connect_timeout.as_secs()
                )));
                return;
            }
        },
        _ = &mut control => return,
    };
    tokio::spawn(super::liveness::heartbeat(ctx.clone()));
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(super::reader::run(ctx.clone(), ready_tx));
    let ready = tokio::time::timeout(replay_timeout, ready_rx);
    tokio::select! {
        r = ready => match r {
            Ok(Ok(())) if !ctx.is_failed() => {}
            Ok(_) => {
                let _ = started.send(Err("it failed while reading the room back".into()));
                return;
            }
            Err(_) => {
                let _ = started.send(Err(format!(
                    "the room was not read back within {} s", replay_timeout.as_secs()
                )));
                return;
            }
        },
        _ = &mut control => return,
    }
    tokio::spawn(super::liveness::poll(ctx.clone()));
    tokio::spawn(super::publisher::run(ctx.clone(), commands));
    let _ = started.send(Ok(()));
    if let Ok(Control::Close(done)) = control.await {
        let (said_tx, said_rx) = oneshot::channel();
        let said =
            own_commands.send(Command::Close(said_tx)).await.is_ok() && said_rx.await.is_ok();
        let _ = done.send(said);
    }
}
