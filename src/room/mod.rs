//! The chat room: its registry of members and its one order of events.
//!
//! [`ChatRoom`] does no I/O. Joins, public lines and leaves take the
//! registry's write lock and are appended once to the room's log (see
//! [`outbox`](crate::outbox)), so every member sees them in one and the same
//! order; whispers and look-ups share a read lock and go to one member's
//! [`Outbox`]. Writers elsewhere move the bytes.
//!
//! A member whose backlog passes its limit is cut by the log as the line
//! that takes it over is appended, and removed in the same critical section;
//! its leave notice follows in the room's order. Wake-ups, aborts and logging
//! wait until the lock is released.

mod backend;
mod error;
mod history;
mod registry;
mod relay;

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use crate::outbox::{LogStats, Outbox, Push, RoomLog, DEFAULT_CHUNK_BYTES};
use crate::protocol::{name_key, validate_name, Reply};
use history::History;
use registry::{Aftermath, Member, Registry};

pub use backend::{Claim, JoinTicket, Room, RoomBackend};
pub use error::{JoinError, RoomError};
pub use relay::Cut;

/// Identifies a member of a room. Ids grow with each join and are never
/// reused, so they also give the join order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub(crate) u64);

impl MemberId {
    /// The id as a number (unique in its room).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A chat room: members with unique names, public and private messages.
///
/// Every method appends to the room's log or pushes into one outbox and
/// returns; none blocks on a connection. See the crate docs for an example
/// with no sockets at all.
pub struct ChatRoom {
    registry: RwLock<Registry>,
    log: Arc<RoomLog>,
}

impl ChatRoom {
    /// An empty, open room.
    pub fn new() -> Self {
        Self::with_chunk_size(DEFAULT_CHUNK_BYTES)
    }

    /// An empty, open room whose log allocates chunks of `bytes` (default
    /// [`DEFAULT_CHUNK_BYTES`]). Smaller chunks give memory back in finer
    /// steps, at the cost of more allocations.
    pub fn with_chunk_size(bytes: usize) -> Self {
        Self::build(bytes, 0)
    }

    /// An empty, open room that replays up to `lines` of its latest public
    /// lines to each newcomer (`--history`): right after its welcome line and
    /// before its join notice, as they were first sent, in the room's order.
    /// Whispers are never replayed.
    ///
    /// The room keeps those lines, rendered, in one bounded ring: about
    /// `lines` times the longest line of memory. A newcomer is replayed no
    /// more than half its outbox's limit (the newest lines that fit), so
    /// that its welcome never overflows it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chatcore::{ChatRoom, Outbox};
    ///
    /// let room = ChatRoom::with_history(2);
    /// let ana = room.join("ana", Arc::new(Outbox::new(1 << 20)))?;
    /// for text in ["one", "two", "three"] {
    ///     room.broadcast(ana, text)?;
    /// }
    /// let bob = Arc::new(Outbox::new(1 << 20));
    /// room.join("bob", bob.clone())?;
    /// assert_eq!(
    ///     bob.drain_bytes(),
    ///     b"Welcome to the chat, bob!\nana: two\nana: three\nbob has joined the chat.\n"
    /// );
    /// # Ok::<(), chatcore::Error>(())
    /// ```
    pub fn with_history(lines: usize) -> Self {
        Self::build(DEFAULT_CHUNK_BYTES, lines)
    }

    fn build(chunk_bytes: usize, history: usize) -> Self {
        ChatRoom {
            registry: RwLock::new(Registry {
                history: History::new(history),
                ..Registry::default()
            }),
            log: Arc::new(RoomLog::new(chunk_bytes)),
        }
    }

    /// An id that no member of this room has, nor will get from a join: for
    /// a [`RoomBackend`] that names its members before they join.
    pub fn reserve_id(&self) -> MemberId {
        let mut registry = self.registry.write();
        let id = MemberId(registry.next_id);
        registry.next_id += 1;
        id
    }

    /// How many public lines a newcomer is replayed at most (0: none).
    pub fn history_lines(&self) -> usize {
        self.registry.read().history.cap()
    }

    /// Adds a member named `name` whose lines go to `outbox`.
    ///
    /// The new member gets `Welcome to the chat, <name>!`, then every member,
    /// the new one included, gets `<name> has joined the chat.`
    ///
    /// A join is all or nothing: if `outbox` cannot take the newcomer's two
    /// lines, nobody is told anything, the name stays free and the join
    /// fails with [`JoinError::Undeliverable`].
    ///
    /// In a room made [`with_history`](Self::with_history), the latest
    /// public lines come between the two.
    pub fn join(&self, name: &str, outbox: Arc<Outbox>) -> Result<MemberId, JoinError> {
        validate_name(name)?;
        let key = name_key(name);
        let mut welcome = Vec::with_capacity(name.len() + 24);
        welcome.extend_from_slice(&Reply::Welcome(name).encode());
        let joined = Reply::Joined(name).encode();
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if registry.closed {
            return Err(JoinError::Closed);
        }
        if registry.by_key.contains_key(&key) {
            return Err(JoinError::NameTaken(name.to_owned()));
        }
        registry
            .history
            .replay_into(&mut welcome, replay_budget(&outbox));
        // The newcomer first: if it cannot take its own lines, it never was
        // a member.
        let id = MemberId(registry.next_id);
        if !outbox.attach(&self.log, id.0, &welcome, joined.len()) {
            return Err(JoinError::Undeliverable);
        }
        registry.next_id += 1;
        registry.by_key.insert(key.clone(), id);
        registry.members.insert(
            id,
            Member {
                id,
                name: Arc::from(name),
                key,
                outbox,
            },
        );
        registry.publish(&self.log, &joined, &mut after);
        drop(registry);
        after.run();
        log::debug!("member {id} joined");
        Ok(id)
    }

    /// Removes a member; every remaining member gets `<name> has left the
    /// chat.` Returns `false` (and tells nobody) if `id` was not a member,
    /// say because it already left or overflowed, or the room is closed.
    ///
    /// The member's outbox is not closed (that is its connection's
    /// business), but it gets nothing more from the room's log.
    pub fn leave(&self, id: MemberId) -> bool {
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if registry.closed {
            return false;
        }
        let Some(member) = registry.remove(id) else {
            return false;
        };
        member.outbox.leave_log();
        registry.publish(&self.log, &Reply::Left(&member.name).encode(), &mut after);
        drop(registry);
        after.run();
        log::debug!("member {id} left");
        true
    }

    /// Sends `<name>: <text>` from member `from` to every member, the sender
    /// included.
    pub fn broadcast(&self, from: MemberId, text: &str) -> Result<(), RoomError> {
        self.broadcast_all(from, &[text])
    }

    /// Sends several public lines from member `from`, in order, as one event
    /// of the room: no other event comes between them. The lines are
    /// rendered into one block and appended to the room's log once, for
    /// every member. A driver that read several lines from a member at once
    /// saves a lock per line.
    pub fn broadcast_all(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError> {
        if texts.is_empty() {
            return Ok(());
        }
        let mut after = Aftermath::default();
        let mut guard = self.registry.write();
        if guard.closed {
            return Err(RoomError::Closed);
        }
        let registry = &mut *guard;
        let sender = registry
            .members
            .get(&from)
            .ok_or(RoomError::NotMember(from))?;
        let block = render_public(&mut registry.history, &sender.name, texts);
        registry.publish(&self.log, &block, &mut after);
        drop(guard);
        after.run();
        Ok(())
    }

    /// Sends `priv(<name>): <text>` from member `from` to the member named
    /// `target` (without regard to case; it may be the sender), and to no one
    /// else.
    pub fn whisper(&self, from: MemberId, target: &str, text: &str) -> Result<(), RoomError> {
        let key = name_key(target);
        let overflowed = {
            let registry = self.registry.read();
            if registry.closed {
                return Err(RoomError::Closed);
            }
            let sender = registry.member(from).ok_or(RoomError::NotMember(from))?;
            let recipient = registry
                .by_key
                .get(&key)
                .and_then(|&id| registry.member(id))
                .ok_or_else(|| RoomError::UserNotFound(target.to_owned()))?;
            let line = Reply::Private {
                from: &sender.name,
                text,
            }
            .encode();
            match recipient.outbox.push(&line) {
                Push::Overflow => Some(recipient.id),
                Push::Queued | Push::Closed => None,
            }
        };
        if let Some(id) = overflowed {
            let mut after = Aftermath::default();
            let mut registry = self.registry.write();
            if !registry.closed {
                registry.remove_cut(&self.log, vec![id], &mut after);
            }
            drop(registry);
            after.run();
        }
        Ok(())
    }

    /// The names of the members online, in the order they joined.
    pub fn member_names(&self) -> Vec<Arc<str>> {
        let registry = self.registry.read();
        registry.members.values().map(|m| m.name.clone()).collect()
    }

    /// The `Users online (<n>): …` line: the names are read under one read
    /// lock, and rendered after it.
    pub fn user_list(&self) -> Bytes {
        let names = self.member_names();
        let names: Vec<&str> = names.iter().map(|name| &**name).collect();
        Reply::UserList(&names).encode()
    }

    /// The registered name of a member, as it joined.
    pub fn name_of(&self, id: MemberId) -> Option<Arc<str>> {
        self.registry.read().member(id).map(|m| m.name.clone())
    }

    /// How many members are online.
    pub fn len(&self) -> usize {
        self.registry.read().members.len()
    }

    /// Whether nobody is online.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Figures about the room log's memory: what it keeps is bounded by the
    /// members' limit, not by their number.
    pub fn log_stats(&self) -> LogStats {
        self.log.lock().stats()
    }

    /// Closes the room for good: no more joins or messages. Every member gets
    /// what the room accepted before, then `last` as its final line (no
    /// leave notices); its outbox is closed and it is removed.
    pub fn close(&self, last: &Bytes) {
        let mut registry = self.registry.write();
        registry.closed = true;
        for member in std::mem::take(&mut registry.members).into_values() {
            member.outbox.close_with(last);
        }
        registry.by_key.clear();
    }

    /// Whether [`ChatRoom::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.registry.read().closed
    }
}

/// Renders public lines into one block, keeping each in the history.
fn render_public(history: &mut History, name: &str, texts: &[&str]) -> BytesMut {
    let size = texts.iter().map(|t| name.len() + t.len() + 3).sum();
    let mut block = BytesMut::with_capacity(size);
    for &text in texts {
        let start = block.len();
        Reply::Public { from: name, text }.encode_into(&mut block);
        history.push(&block[start..]);
    }
    block
}

/// The most bytes of history a newcomer with this outbox is replayed: half
/// its limit, so that the replay never overflows a fresh outbox.
fn replay_budget(outbox: &Outbox) -> usize {
    outbox.limit() / 2
}

impl Default for ChatRoom {
    fn default() -> Self {
        ChatRoom::new()
    }
}

impl fmt::Debug for ChatRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.registry.read();
        f.debug_struct("ChatRoom")
            .field("members", &registry.members.len())
            .field("closed", &registry.closed)
            .field("log", &self.log.lock().stats())
            .finish()
    }
}

#[cfg(test)]
mod tests;
