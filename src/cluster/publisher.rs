//! The publisher: takes the node's requests in order and publishes them,
//! one stream message at a time, consecutive lines batched together.
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
use super::wire::{said_size, LeaveReason, Record, Said};

/// The most requests taken off the queue at once.
const TAKE: usize = 4096;

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
            Command::Say { member, lines } => {
                let mut batch = vec![(member, lines)];
                let mut size = 0;
                while size < p.ctx.config.max_batch_bytes {
                    match pending.pop_front() {
                        Some(Command::Say { member, lines }) => {
                            size += lines.iter().map(|l| l.len() + 5).sum::<usize>();
                            batch.push((member, lines));
                        }
                        Some(other) => {
                            pending.push_front(other);
                            break;
                        }
                        None => break,
                    }
                }
                p.say(batch).await
            }
            Command::Claim { member, name } => {
                p.ctx.state.lock().claiming.insert(member);
                tokio::spawn(claims::claim(p.ctx.clone(), member, name));
                true
            }
            Command::Join { member } => p.join(member).await,
            Command::Whisper {
                member,
                target,
                text,
            } => p.whisper(member, target, text).await,
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

    /// Publishes lines of one or more members as one or more messages (each
    /// at most about `max_batch_bytes`). Returns false when the link stops.
    async fn say(&mut self, batch: Vec<(u64, Vec<String>)>) -> bool {
        let mut said: Vec<Said> = Vec::new();
        let mut size = 0;
        for (member, lines) in batch {
            let Some(name) = self.joined_name(member) else {
                self.refuse(member, Refusal::Lines(lines.len()));
                continue;
            };
            // Consecutive lines of one member share one entry.
            match said.last_mut() {
                Some(last) if last.member == member => last.lines.extend(lines),
                _ => said.push(Said {
                    member,
                    name,
                    lines,
                }),
            }
            size += said.last().map(said_size).unwrap_or(0);
            if size >= self.ctx.config.max_batch_bytes {
                if !self.publish_lines(std::mem::take(&mut said)).await {
                    return false;
                }
                size = 0;
            }
        }
        said.is_empty() || self.publish_lines(said).await
    }

    async fn publish_lines(&mut self, said: Vec<Said>) -> bool {
        let record = Record::Lines {
            node: self.ctx.node.clone(),
            said,
        };
        let id = self.next_id();
        let subject = format!("{}.p", self.ctx.prefix);
        match self.ctx.publish(subject, record.encode(), &id).await {
            Ok(seq) => self.stored(seq),
            Err(PublishFailure::Refused(why)) => {
                log::warn!("room {}: lines refused: {why}", self.ctx.config.room);
                if let Record::Lines { said, .. } = record {
                    for s in said {
                        self.refuse(s.member, Refusal::Lines(s.lines.len()));
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

    async fn whisper(&mut self, member: u64, target: String, text: String) -> bool {
        let Some(name) = self.joined_name(member) else {
            self.refuse(member, Refusal::Whisper);
            return true;
        };
        let record = Record::Whisper {
            node: self.ctx.node.clone(),
            member,
            name,
            target,
            text,
        };
        let id = self.next_id();
        let subject = format!("{}.w", self.ctx.prefix);
        match self.ctx.publish(subject, record.encode(), &id).await {
            Ok(seq) => self.stored(seq),
            Err(PublishFailure::Refused(why)) => {
                log::warn!("room {}: a whisper refused: {why}", self.ctx.config.room);
                self.refuse(member, Refusal::Whisper);
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
