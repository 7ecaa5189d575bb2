//! A relayed room: the local room of a [`RoomBackend`](super::RoomBackend)
//! whose events are decided elsewhere (a room across servers). The back end
//! hands it the room's events in the room's one order; it renders each once
//! and fans it out to this server's members through the room log, as a
//! single server does.
//!
//! Members elsewhere are not registered here: events carry their names.
//! Names are the back end's business too (no uniqueness check here). A
//! member of this server cut as a slow consumer is removed without a
//! notice; each method returns those members, for the back end to announce
//! their leaves in the room's order.

use std::sync::Arc;

use parking_lot::RwLock;

use super::registry::{Aftermath, Member, Registry};
use super::{render_public, replay_budget, ChatRoom, JoinError, MemberId};
use crate::outbox::{Outbox, Push, RoomLog, DEFAULT_CHUNK_BYTES};
use crate::protocol::{name_key, Reply};

/// Members of this server removed as slow consumers by a relayed event:
/// their leaves are still to be announced, in the room's order.
pub type Cut = Vec<MemberId>;

impl ChatRoom {
    /// An empty room whose events are relayed from elsewhere (see the
    /// `relay_*` methods), for a [`RoomBackend`](super::RoomBackend).
    /// Its history is the back end's too (see [`ChatRoom::relay_join`]).
    pub fn relayed() -> Self {
        ChatRoom {
            registry: RwLock::new(Registry {
                relayed: true,
                ..Registry::default()
            }),
            log: Arc::new(RoomLog::new(DEFAULT_CHUNK_BYTES)),
        }
    }

    /// A member of this server joins as `id` (see [`ChatRoom::reserve_id`])
    /// at this point of the room's order: it gets `Welcome to the chat,
    /// <name>!`, then `replay` (rendered public lines; up to half its
    /// outbox's limit of the newest are kept), then every member here gets
    /// `<name> has joined the chat.` As [`ChatRoom::join`], all or nothing
    /// ([`JoinError::Undeliverable`], [`JoinError::Closed`]).
    pub fn relay_join(
        &self,
        id: MemberId,
        name: &str,
        outbox: Arc<Outbox>,
        replay: &[u8],
    ) -> Result<Cut, JoinError> {
        let mut welcome = Vec::with_capacity(name.len() + 24 + replay.len());
        welcome.extend_from_slice(&Reply::Welcome(name).encode());
        welcome.extend_from_slice(newest_lines(replay, replay_budget(&outbox)));
        let joined = Reply::Joined(name).encode();
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if registry.closed {
            return Err(JoinError::Closed);
        }
        if !outbox.attach(&self.log, id.0, &welcome, joined.len()) {
            return Err(JoinError::Undeliverable);
        }
        registry.members.insert(
            id,
            Member {
                id,
                name: Arc::from(name),
                key: name_key(name),
                outbox,
            },
        );
        registry.publish(&self.log, &joined, &mut after);
        Ok(self.finish(registry, after))
    }

    /// A member elsewhere joined: `<name> has joined the chat.`
    pub fn relay_joined(&self, name: &str) -> Cut {
        self.relay_event(&Reply::Joined(name).encode())
    }

    /// Public lines of `name` (of this server or not), in order, as one
    /// event. They are kept in this room's history, if it has one.
    pub fn relay_said(&self, name: &str, texts: &[&str]) -> Cut {
        if texts.is_empty() {
            return Cut::new();
        }
        let mut after = Aftermath::default();
        let mut guard = self.registry.write();
        if guard.closed {
            return Cut::new();
        }
        let registry = &mut *guard;
        let block = render_public(&mut registry.history, name, texts);
        registry.publish(&self.log, &block, &mut after);
        self.finish(guard, after)
    }

    /// A member left: `<name> has left the chat.` If it is `id`, a member of
    /// this server still here, it is removed first and its outbox closed
    /// (what the room sent it before is still written; not the notice).
    pub fn relay_left(&self, id: Option<MemberId>, name: &str) -> Cut {
        let notice = Reply::Left(name).encode();
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if registry.closed {
            return Cut::new();
        }
        if let Some(member) = id.and_then(|id| registry.remove(id)) {
            member.outbox.close();
        }
        registry.publish(&self.log, &notice, &mut after);
        self.finish(registry, after)
    }

    /// Removes a member of this server without a notice (its leave could
    /// not be given to the room's order) and closes its outbox. Returns
    /// whether it was here.
    pub fn relay_remove(&self, id: MemberId) -> bool {
        let member = self.registry.write().remove(id);
        match member {
            Some(member) => {
                member.outbox.close();
                true
            }
            None => false,
        }
    }

    /// A line for one member of this server alone (a whisper, a reply): it
    /// comes after everything the room sent before. With `reply`, it is
    /// pushed as [`Outbox::push_reply`] does (the `\list` line). A member
    /// it overflows is removed (and returned).
    pub fn relay_private(&self, to: MemberId, line: &[u8], reply: bool) -> Cut {
        let overflowed = {
            let registry = self.registry.read();
            if registry.closed {
                return Cut::new();
            }
            let Some(member) = registry.member(to) else {
                return Cut::new();
            };
            let pushed = if reply {
                member.outbox.push_reply(line)
            } else {
                member.outbox.push(line)
            };
            pushed == Push::Overflow
        };
        if !overflowed {
            return Cut::new();
        }
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if !registry.closed {
            registry.remove_cut(&self.log, vec![to], &mut after);
        }
        self.finish(registry, after)
    }

    /// Appends an event (no member of its own) for every member here.
    fn relay_event(&self, event: &[u8]) -> Cut {
        let mut after = Aftermath::default();
        let mut registry = self.registry.write();
        if registry.closed {
            return Cut::new();
        }
        registry.publish(&self.log, event, &mut after);
        self.finish(registry, after)
    }

    /// Releases the lock, then wakes and aborts what the event left to do;
    /// returns whom it cut.
    fn finish(
        &self,
        registry: parking_lot::RwLockWriteGuard<'_, Registry>,
        after: Aftermath,
    ) -> Cut {
        drop(registry);
        let cut = after.cut.clone();
        after.run();
        cut
    }
}

/// The newest whole lines of `lines` that fit in `budget` bytes.
fn newest_lines(lines: &[u8], budget: usize) -> &[u8] {
    if lines.len() <= budget {
        return lines;
    }
    // Start after a `\n` within the last `budget` bytes.
    let from = lines.len() - budget;
    match lines[from - 1..].iter().position(|&b| b == b'\n') {
        Some(0) => &lines[from..],
        Some(at) => &lines[from + at..],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_lines_keeps_whole_lines() {
        let lines = b"a: 1\na: 22\na: 333\n";
        assert_eq!(newest_lines(lines, 100), &lines[..]);
        assert_eq!(newest_lines(lines, 13), b"a: 22\na: 333\n");
        assert_eq!(newest_lines(lines, 12), b"a: 333\n");
        assert_eq!(newest_lines(lines, 7), b"a: 333\n");
        assert_eq!(newest_lines(lines, 6), b"");
    }
}
