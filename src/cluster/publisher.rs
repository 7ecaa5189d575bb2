//! The publisher: takes the node's requests in order and publishes them,
//! one stream message at a time, consecutive lines and whispers batched
//! together.
//!
//! One message in flight per node keeps each sender's order through
//! retries (a message is retried under its own `Nats-Msg-Id` until it is
//! stored, and nothing after it is sent before); while it is in flight the
//! next requests pile up in the queue and leave together, so throughput
//! grows with load instead of being bound by the round trip.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::bridge::{Command, Ctx, Deferred, PublishFailure};
use super::claims;
use super::event::Refusal;
use super::wire::{Entry, LeaveReason, Record, Said, Whisper};

/// The most requests taken off the queue at once.
const TAKE: usize = 4096;

/// A member's public lines or whisper, on its way into a batch.
enum Item {
    Lines {
        member: u64,
        lines: Vec<String>,
    },
    Whisper {
        member: u64,
        target: String,
        text: String,
    },
}

impl Item {
    fn member(&self) -> u64 {
        match self {
            Item::Lines { member, .. } | Item::Whisper { member, .. } => *member,
        }
    }

    /// Near enough to bound a batch's bytes.
    fn size(&self) -> usize {
        match self {
            Item::Lines { lines, .. } => lines.iter().map(|l| l.len() + 5).sum(),
            Item::Whisper { target, text, .. } => target.len() + text.len() + 26,
        }
    }

    /// What the member is told if the room cannot take it.
    fn refusal(&self) -> Refusal {
        match self {
            Item::Lines { lines, .. } => Refusal::Lines(lines.len()),
            Item::Whisper { .. } => Refusal::Whisper,
        }
    }
}

struct Publisher {
    ctx: Arc<Ctx>,
    /// Numbers this node's messages, for their `Nats-Msg-Id`.
    counter: u64,
}

/// Runs until the queue closes, the link fails or the goodbye is said.
pub(crate) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Command>) {
    let mut p = Publisher { ctx, counter: 0 };
    let mut pending: VecDeque<Command> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(c) => pending.push_back(c),
                None => return,
            }
        }
        while pending.len() < TAKE {
            match rx.try_recv() {
                Ok(c) => pending.push_back(c),
                Err(_) => break,
            }
        }
        let Some(command) = pending.pop_front() else {
            continue;
        };
        if p.ctx.is_failed() {
            return;
        }
        let carry_on = match command {
            Command::Say { .. } | Command::Whisper { .. } => {
                // Consecutive lines and whispers, of any members, leave
                // together (in one or more stream messages).
                let mut batch = Vec::new();
                let mut size = 0;
                let mut next = Some(command);
                while let Some(c) = next {
                    let item = match c {
                        Command::Say { member, lines } => Item::Lines { member, lines },
                        Command::Whisper {
                            member,
                            target,
                            text,
                        } => Item::Whisper {
                            member,
                            target,
                            text,
                        },
                        other => {
                            pending.push_front(other);
                            break;
                        }
                    };
                    size += item.size();
                    batch.push(item);
                    if size >= p.ctx.config.max_batch_bytes {
                        break;
                    }
                    next = pending.pop_front();
                }
                p.say(batch).await
            }
            Command::Claim { member, name } => {
                p.ctx.state.lock().claiming.insert(member);
                tokio::spawn(claims::claim(p.ctx.clone(), member, name));
                true
            }
            Command::Join { member } => p.join(member).await,
            Command::Leave { member } => p.leave(member, true).await,
            Command::List { member } => {
                p.ctx.state.lock().defer(Deferred::List { member });
                true
            }
            Command::Barrier { member, token } => {
                p.ctx
                    .state
                    .lock()
                    .defer(Deferred::Barrier { member, token });
                true
            }
            Command::Close(said) => {
                p.goodbye().await;
                let _ = said.send(());
                return;
            }
        };
        if !carry_on {
            return;
        }
    }
}

impl Publisher {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}.{}", self.ctx.node, self.counter)
    }

    /// Records a stored message's sequence, so replies wait for it.
    fn stored(&self, seq: u64) {
        let mut st = self.ctx.state.lock();
        st.published = st.published.max(seq);
    }

    fn refuse(&self, member: u64, what: Refusal) {
        self.ctx
            .state
            .lock()
            .defer(Deferred::Refused { member, what });
    }

    /// The name `member` joined under, if it did.
    fn joined_name(&self, member: u64) -> Option<String> {
        let st = self.ctx.state.lock();
        st.claims
            .get(&member)
            .filter(|c| c.joined)
            .map(|c| c.name.clone())
    }

    /// Publishes lines and whispers of one or more members, in their order,
    /// as one or more messages (each at most about `max_batch_bytes`).
    /// Returns false when the link stops.
    async fn say(&mut self, batch: Vec<Item>) -> bool {
        let mut entries: Vec<Entry> = Vec::new();
        let mut size = 0;
        for item in batch {
            let member = item.member();
            let Some(name) = self.joined_name(member) else {
                self.refuse(member, item.refusal());
                continue;
            };
            size += item.size() + name.len();
            match item {
                // Consecutive lines of one member share one entry.
                Item::Lines { member, lines } => match entries.last_mut() {
                    Some(Entry::Said(last)) if last.member == member => last.lines.extend(lines),
                    _ => entries.push(Entry::Said(Said {
                        member,
                        name,
                        lines,
                    })),
                },
                Item::Whisper {
                    member,
                    target,
                    text,
                } => entries.push(Entry::Whisper(Whisper {
                    member,
                    name,
                    target,
                    text,
                })),
            }
            if size >= self.ctx.config.max_batch_bytes {
                if !self.publish_batch(std::mem::take(&mut entries)).await {
                    return false;
                }
                size = 0;
            }
        }
        entries.is_empty() || self.publish_batch(entries).await
    }

    async fn publish_batch(&mut self, entries: Vec<Entry>) -> bool {
        // A batch with public lines goes to the subject whose latest
        // messages hold the history; whispers alone, to their own.
        let public = entries.iter().any(|e| matches!(e, Entry::Said(_)));
        let subject = format!("{}.{}", self.ctx.prefix, if public { "p" } else { "w" });
        let record = Record::Batch {
            node: self.ctx.node.clone(),
            entries,
        };
        let id = self.next_id();
        match self.ctx.publish(subject, record.encode(), &id).await {
            Ok(seq) => self.stored(seq),
            Err(PublishFailure::Refused(why)) => {
                log::warn!("room {}: lines refused: {why}", self.ctx.config.room);
                if let Record::Batch { entries, .. } = record {
                    for entry in entries {
                        match entry {
                            Entry::Said(s) => self.refuse(s.member, Refusal::Lines(s.lines.len())),
                            Entry::Whisper(w) => self.refuse(w.member, Refusal::Whisper),
                        }
                    }
                }
            }
            Err(PublishFailure::Stopped) => return false,
        }
        true
    }

    async fn join(&mut self, member: u64) -> bool {
        let name = {
            let st = self.ctx.state.lock();
            st.claims.get(&member).map(|c| c.name.clone())
        };
        let Some(name) = name else {
            self.refuse(member, Refusal::Join);
            return true;
        };
        let node = self.ctx.node.clone();
        let record = Record::Join {
            node: node.clone(),
            member,
            name,
        };
        let subject = self.ctx.member_subject(&node, member);
        let id = format!("j.{node}.{member}");
        match self.ctx.publish(subject, record.encode(), &id).await {
            Ok(seq) => {
                self.stored(seq);
                if let Some(c) = self.ctx.state.lock().claims.get_mut(&member) {
                    c.joined = true;
                }
            }
            Err(PublishFailure::Refused(why)) => {
                log::warn!("room {}: a join refused: {why}", self.ctx.config.room);
                self.refuse(member, Refusal::Join);
                return self.leave(member, false).await;
            }
            Err(PublishFailure::Stopped) => return false,
        }
        true
    }

    /// Publishes the leave of `member` (if it joined), then frees its name
    /// (in the background when `background`).
    async fn leave(&mut self, member: u64, background: bool) -> bool {
        let claim = {
            let mut st = self.ctx.state.lock();
            let claim = st.claims.remove(&member);
            if claim.is_none() && st.claiming.contains(&member) {
                st.abandoned.insert(member); // its claim task frees the name
            }
            claim
        };
        let Some(claim) = claim else {
            return true;
        };
        if claim.joined {
            let node = self.ctx.node.clone();
            let record = Record::Leave {
                node: node.clone(),
                member,
                name: claim.name.clone(),
                reason: LeaveReason::Left,
            };
            let subject = self.ctx.member_subject(&node, member);
            // The id a survivor would use if this node died: one notice.
            let id = format!("x.{node}.{member}");
            match self.ctx.publish(subject, record.encode(), &id).await {
                Ok(seq) => self.stored(seq),
                Err(PublishFailure::Refused(why)) => {
                    log::error!("room {}: a leave refused: {why}", self.ctx.config.room)
                }
                Err(PublishFailure::Stopped) => return false,
            }
        }
        if background {
            tokio::spawn(claims::release(self.ctx.clone(), claim.key, claim.revision));
        } else {
            claims::release(self.ctx.clone(), claim.key, claim.revision).await;
        }
        true
    }

    /// Leaves for every member still here, names freed, heartbeat removed.
    async fn goodbye(&mut self) {
        let mut members: Vec<u64> = {
            let mut st = self.ctx.state.lock();
            st.closing = true;
            st.claims.keys().copied().collect()
        };
        members.sort_unstable();
        for member in members {
            if !self.leave(member, false).await {
                return;
            }
        }
        self.ctx
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        if let Err(e) = self.ctx.nodes.delete(self.ctx.node.as_str()).await {
            log::warn!(
                "room {}: removing this node's heartbeat failed: {e}",
                self.ctx.config.room
            );
        }
    }
}
