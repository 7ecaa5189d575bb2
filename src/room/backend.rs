//! Where a session's room operations go: this server's own [`ChatRoom`],
//! which answers at once, or a [`RoomBackend`] whose answers may come later
//! (a room shared by several servers, whose order is decided elsewhere).
//!
//! A session holds a [`Room`]. For the in-process room it calls
//! [`ChatRoom`]'s methods directly (no boxing, no dynamic call on the
//! per-line path); for a back end, through the trait.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::{ChatRoom, JoinError, MemberId, RoomError};
use crate::outbox::{Outbox, Push};

/// The answer to a name claim ([`RoomBackend::claim`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Claim {
    /// The member joined: its welcome is in its outbox.
    Joined(MemberId),
    /// No: the session answers the client and asks for a name again (or
    /// closes, for [`JoinError::Closed`]).
    Refused(JoinError),
    /// The answer comes later, through the ticket.
    Pending(Arc<JoinTicket>),
}

/// A name claim whose answer is still to come.
///
/// The back end keeps one, and [`resolve`](Self::resolve)s it once the room
/// has decided. For a join it first puts the member in its local room (the
/// welcome, the history and the join notice go into the outbox), then
/// resolves; resolving wakes the connection's driver so that the session
/// takes the answer and goes on with the input it held meanwhile.
pub struct JoinTicket {
    member: MemberId,
    outbox: Weak<Outbox>,
    answer: Mutex<Option<Result<(), JoinError>>>,
    answered: Condvar,
}

impl JoinTicket {
    /// A ticket for the member `member` (an id of the back end's choosing,
    /// see [`ChatRoom::reserve_id`]) whose lines go to `outbox`.
    pub fn new(member: MemberId, outbox: &Arc<Outbox>) -> Arc<Self> {
        Arc::new(JoinTicket {
            member,
            outbox: Arc::downgrade(outbox),
            answer: Mutex::new(None),
            answered: Condvar::new(),
        })
    }

    /// The member this claim is for: the session's id once joined.
    pub fn member(&self) -> MemberId {
        self.member
    }

    /// Gives the answer (`Ok`: joined), and wakes the connection's driver.
    /// Only the first answer counts; returns whether this one did.
    pub fn resolve(&self, answer: Result<(), JoinError>) -> bool {
        let mut slot = self.answer.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(answer);
        drop(slot);
        self.answered.notify_all();
        if let Some(outbox) = self.outbox.upgrade() {
            outbox.nudge();
        }
        true
    }

    /// The answer, if it has come.
    pub fn answer(&self) -> Option<Result<(), JoinError>> {
        self.answer.lock().clone()
    }

    /// Waits up to `timeout` for the answer; returns whether it has come.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut slot = self.answer.lock();
        if slot.is_none() {
            self.answered.wait_for(&mut slot, timeout);
        }
        slot.is_some()
    }
}

impl fmt::Debug for JoinTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTicket")
            .field("member", &self.member)
            .field("answer", &*self.answer.lock())
            .finish()
    }
}

/// A room whose answers may come later (a room shared by several servers,
/// whose order is decided elsewhere), for a [`Room`].
///
/// # Implementing `RoomBackend`
///
/// A back end renders and fans out to this server's own members through a
/// [`ChatRoom`] of its own ([`RoomBackend::local`], usually
/// [`ChatRoom::relayed`] fed with its `relay_*` methods), exactly as a
/// single server does; what it adds is where the room's order comes from.
/// Every method returns at once: what needs a round trip is answered later,
/// as lines pushed into the member's [`Outbox`] (a whisper's `User '<name>'
/// not found.`, the `\list` line, the session's own replies) or, for a name
/// claim, by resolving the [`JoinTicket`] the session waits on. A member's
/// replies must come after its own earlier lines, as on one server.
///
/// The crate's own back end is `cluster::ClusterRoom` (feature `nats`).
pub trait RoomBackend: Send + Sync + fmt::Debug {
    /// The room of this server's own members, through which the back end
    /// renders the room's events and fans them out. The server reports it
    /// as its room ([`Server::room`](crate::Server::room)).
    fn local(&self) -> &Arc<ChatRoom>;

    /// Asks for `name` for a connection whose lines go to `outbox`. The
    /// name's validity is checked here ([`JoinError::InvalidName`]).
    fn claim(&self, name: &str, outbox: &Arc<Outbox>) -> Claim;

    /// Public lines of `from`, in order, read together.
    fn say(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError>;

    /// A whisper from `from` to the member named `target`.
    fn whisper(&self, from: MemberId, target: &str, text: &str) -> Result<(), RoomError>;

    /// `\list`: the back end pushes the `Users online` line into `outbox`
    /// with [`Outbox::push_reply`], after `from`'s earlier lines.
    fn list(&self, from: MemberId, outbox: &Arc<Outbox>) -> Result<(), RoomError>;

    /// One of the session's own replies to a member (`\help`, a usage or
    /// error line): into `outbox` after `from`'s earlier lines.
    fn reply(&self, from: MemberId, outbox: &Arc<Outbox>, line: Bytes) -> Result<(), RoomError>;

    /// The member `id` leaves (or gives up a claim still pending, with its
    /// ticket's id). The back end closes `outbox` once the member is out of
    /// the room, in the room's order: what the room sent it before is still
    /// written.
    fn leave(&self, id: MemberId, outbox: &Arc<Outbox>);

    /// The server is shutting down: no more lines or joins; every member
    /// gets `last` as its final line. It may wait briefly (bounded) for
    /// lines already on their way through the room to arrive first.
    fn close(&self, last: &Bytes) {
        self.local().close(last);
    }
}

/// The room a session speaks to: the in-process [`ChatRoom`] (the default),
/// or a [`RoomBackend`]. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use chatcore::{ChatRoom, room::Room};
///
/// let room: Room = Arc::new(ChatRoom::new()).into();
/// assert!(room.is_local());
/// assert!(room.local().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Room(Backing);

#[derive(Clone, Debug)]
enum Backing {
    Local(Arc<ChatRoom>),
    Backend(Arc<dyn RoomBackend>),
}

impl Room {
    /// A room served by `backend`.
    pub fn backend(backend: Arc<dyn RoomBackend>) -> Room {
        Room(Backing::Backend(backend))
    }

    /// The room of this server's own members (the in-process room itself,
    /// or the back end's [`local`](RoomBackend::local) one).
    pub fn local(&self) -> &Arc<ChatRoom> {
        match &self.0 {
            Backing::Local(room) => room,
            Backing::Backend(backend) => backend.local(),
        }
    }

    /// Whether this is the in-process room, which answers at once.
    pub fn is_local(&self) -> bool {
        matches!(self.0, Backing::Local(_))
    }

    pub(crate) fn claim(&self, name: &str, outbox: &Arc<Outbox>) -> Claim {
        match &self.0 {
            Backing::Local(room) => match room.join(name, outbox.clone()) {
                Ok(id) => Claim::Joined(id),
                Err(error) => Claim::Refused(error),
            },
            Backing::Backend(backend) => backend.claim(name, outbox),
        }
    }

    pub(crate) fn say(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError> {
        match &self.0 {
            Backing::Local(room) => room.broadcast_all(from, texts),
            Backing::Backend(backend) => backend.say(from, texts),
        }
    }

    pub(crate) fn whisper(
        &self,
        from: MemberId,
        target: &str,
        text: &str,
    ) -> Result<(), RoomError> {
        match &self.0 {
            Backing::Local(room) => room.whisper(from, target, text),
            Backing::Backend(backend) => backend.whisper(from, target, text),
        }
    }

    /// `\list`; `Ok(false)` when the member's outbox overflowed (it is to
    /// leave).
    pub(crate) fn list(&self, from: MemberId, outbox: &Arc<Outbox>) -> Result<bool, RoomError> {
        match &self.0 {
            // Its size is the room's, not the member's: it does not count
            // against the member's limit (see `Outbox::push_reply`).
            Backing::Local(room) => Ok(outbox.push_reply(&room.user_list()) != Push::Overflow),
            Backing::Backend(backend) => backend.list(from, outbox).map(|()| true),
        }
    }

    /// The back end, unless this is the in-process room.
    pub(crate) fn as_backend(&self) -> Option<&dyn RoomBackend> {
        match &self.0 {
            Backing::Local(_) => None,
            Backing::Backend(backend) => Some(&**backend),
        }
    }

    /// The member leaves; its outbox is closed (at once, or by the back end
    /// once the room has taken its leave).
    pub(crate) fn leave(&self, id: MemberId, outbox: &Arc<Outbox>) {
        match &self.0 {
            Backing::Local(room) => {
                room.leave(id);
                outbox.close();
            }
            Backing::Backend(backend) => backend.leave(id, outbox),
        }
    }

    /// Shutdown: see [`RoomBackend::close`].
    pub(crate) fn close(&self, last: &Bytes) {
        match &self.0 {
            Backing::Local(room) => room.close(last),
            Backing::Backend(backend) => backend.close(last),
        }
    }
}

impl From<Arc<ChatRoom>> for Room {
    fn from(room: Arc<ChatRoom>) -> Room {
        Room(Backing::Local(room))
    }
}

impl From<ChatRoom> for Room {
    fn from(room: ChatRoom) -> Room {
        Room(Backing::Local(Arc::new(room)))
    }
}
