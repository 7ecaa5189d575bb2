//! Heartbeats, the self-check, and announcing dead nodes.
//!
//! - Every [`LinkConfig::heartbeat`](super::LinkConfig::heartbeat) this node
//!   rewrites its key in the nodes bucket. Any answer from NATS (a heartbeat,
//!   a publish, a stream message) counts as contact; once the first
//!   heartbeat sent after the last contact has waited
//!   [`give_up_after`](super::LinkConfig::give_up_after) with no contact
//!   since, the link fails: the node must stop serving. (Counted from that
//!   heartbeat, not from the last contact, which can be up to a heartbeat
//!   older than the cut: a node gives up only once cut off for
//!   `give_up_after`, and no later than a heartbeat after that.)
//! - Every heartbeat this node also reads every node's key. A node whose
//!   revision has not changed for
//!   [`dead_after`](super::LinkConfig::dead_after), by this node's clock and
//!   while this node's own reads kept succeeding, is dead; so is a node that
//!   serves members in the roster but has had no key at all for as long. (A
//!   read that misses this node's own key counts as failed.) Its members' leaves
//!   are published (each under the `Nats-Msg-Id` `x.<node>.<member>`, so
//!   several survivors make one notice each), its names freed and its key
//!   removed.
//!
//! With `dead_after` = 7 s > `give_up_after` + 2 × `heartbeat` = 6 s, a node
//! is never announced while it may still serve: the survivors' 7 s start no
//! earlier than its last stored heartbeat, which is at most a heartbeat older
//! than the cut; its own 5 s start no later than a heartbeat after the cut.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::time::{interval, timeout, MissedTickBehavior};

use super::bridge::{Ctx, PublishFailure};
use super::claims;
use super::names::NodeId;
use super::wire::{LeaveReason, Record};

/// Writes this node's heartbeat and watches for its own silence.
pub(crate) async fn heartbeat(ctx: Arc<Ctx>) {
    tokio::spawn(watchdog(ctx.clone()));
    let mut tick = interval(ctx.config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let bound = ctx.config.heartbeat.max(Duration::from_millis(500)) * 2;
    let mut beat: u64 = 0;
    loop {
        tick.tick().await;
        if ctx.is_stopped() {
            return;
        }
        beat += 1;
        ctx.asking();
        let put = ctx
            .nodes
            .put(ctx.node.as_str(), Bytes::from(beat.to_string()));
        match timeout(bound, put).await {
            Ok(Ok(_)) => {
                let silent = ctx.last_ok.lock().elapsed();
                if silent > ctx.config.heartbeat * 2 {
                    log::info!(
                        "room {}: NATS answers again after {:.1} s",
                        ctx.config.room,
                        silent.as_secs_f64()
                    );
                }
                ctx.ok()
            }
            Ok(Err(e)) => log::debug!("room {}: heartbeat failed: {e}", ctx.config.room),
            Err(_) => log::debug!("room {}: heartbeat timed out", ctx.config.room),
        }
    }
}

async fn watchdog(ctx: Arc<Ctx>) {
    let mut tick = interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ctx.is_stopped() {
            return;
        }
        // Counted from the first unanswered heartbeat, not from the last
        // answer: the cut began between the two, and a node must not give
        // up before it has lasted `give_up_after`.
        let waiting = ctx.asked.lock().map(|t| t.elapsed());
        if waiting.is_some_and(|waiting| waiting > ctx.config.give_up_after) {
            ctx.fail(format!(
                "cut off from NATS for more than {:.1} s",
                ctx.config.give_up_after.as_secs_f64()
            ));
            return;
        }
    }
}

/// Where announcing a dead node stands.
#[derive(Debug, Clone, Copy)]
enum Announce {
    Running,
    /// Done; its last leave had this stream sequence.
    Done(u64),
}

/// Polls the heartbeats and announces dead nodes.
pub(crate) async fn poll(ctx: Arc<Ctx>) {
    let hb = ctx.config.heartbeat;
    let mut tick = interval(hb);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // node -> (revision, when this node first saw that revision)
    let mut seen: HashMap<NodeId, (u64, Instant)> = HashMap::new();
    // node -> when this node first found it serving members with no key
    let mut missing: HashMap<NodeId, Instant> = HashMap::new();
    let mut last_read: Option<Instant> = None;
    let announces: Arc<Mutex<HashMap<NodeId, Announce>>> = Arc::default();
    loop {
        tick.tick().await;
        if ctx.is_stopped() {
            return;
        }
        let beats = match timeout(hb.max(Duration::from_millis(500)) * 2, read_beats(&ctx)).await {
            // A read that misses this node's own key is not to be trusted:
            // it counts as a failed read.
            Ok(Ok(beats)) if beats.contains_key(&ctx.node) => beats,
            Ok(Ok(_)) => {
                log::debug!(
                    "room {}: a heartbeat read missed this node",
                    ctx.config.room
                );
                continue;
            }
            Ok(Err(e)) => {
                log::debug!("room {}: reading heartbeats failed: {e}", ctx.config.room);
                continue;
            }
            Err(_) => continue,
        };
        let now = Instant::now();
        // Only an unbroken series of reads shows that a key stood still.
        let unbroken = last_read.is_some_and(|t| now.duration_since(t) <= hb * 3);
        last_read = Some(now);
        if !unbroken {
            for v in seen.values_mut() {
                v.1 = now;
            }
            for since in missing.values_mut() {
                *since = now;
            }
        }
        for (node, rev) in &beats {
            match seen.get(node) {
                Some((r, _)) if r == rev => {}
                _ => {
                    seen.insert(node.clone(), (*rev, now));
                }
            }
        }
        let (serving, applied) = {
            let st = ctx.state.lock();
            (st.roster.nodes(), st.applied)
        };
        // Nodes serving members with no key at all (removed, or aged out
        // while no node was running) also get `dead_after` of unbroken
        // reads before they count as dead.
        missing.retain(|node, _| serving.contains(node) && !beats.contains_key(node));
        for node in serving {
            if node != ctx.node && !beats.contains_key(&node) && !seen.contains_key(&node) {
                missing.entry(node).or_insert(now);
            }
        }
        let dead_after = ctx.config.dead_after;
        // Announced and gone: forget them (a key that comes back is new).
        seen.retain(|node, _| {
            beats.contains_key(node)
                || !matches!(announces.lock().get(node), Some(Announce::Done(_)))
        });
        let dead: Vec<NodeId> = seen
            .iter()
            .map(|(node, (_, since))| (node, since))
            .chain(missing.iter())
            .filter(|(node, since)| **node != ctx.node && now.duration_since(**since) >= dead_after)
            .map(|(node, _)| node.clone())
            .collect();
        for node in dead {
            {
                let mut a = announces.lock();
                match a.get(&node) {
                    Some(Announce::Running) => continue,
                    // Its leaves are not all applied here yet.
                    Some(Announce::Done(seq)) if *seq > applied => continue,
                    _ => {}
                }
                a.insert(node.clone(), Announce::Running);
            }
            ctx.dead.lock().insert(node.clone());
            let (ctx, announces) = (ctx.clone(), announces.clone());
            tokio::spawn(async move {
                let outcome = announce(&ctx, &node).await;
                let mut a = announces.lock();
                match outcome {
                    Some(seq) => a.insert(node, Announce::Done(seq)),
                    None => a.remove(&node),
                };
            });
        }
    }
}

/// Every key of a bucket, from one stream-info request (its subjects).
///
/// Not `Store::keys`: that reads through a consumer whose "all delivered"
/// test can end early while keys are being rewritten, as heartbeats always
/// are, and a node missing from a read must not look dead.
async fn bucket_keys(store: &kv::Store) -> Result<Vec<String>, async_nats::Error> {
    let mut subjects = store
        .stream
        .info_with_subjects(format!("{}>", store.prefix))
        .await?;
    let mut keys = Vec::new();
    while let Some(item) = subjects.next().await {
        let (subject, _) = item?;
        if let Some(key) = subject.strip_prefix(store.prefix.as_str()) {
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// Every node's heartbeat revision.
async fn read_beats(ctx: &Ctx) -> Result<HashMap<NodeId, u64>, async_nats::Error> {
    let mut out = HashMap::new();
    for key in bucket_keys(&ctx.nodes).await? {
        let Some(node) = NodeId::parse(&key) else {
            continue;
        };
        if let Some(entry) = ctx.nodes.entry(key).await? {
            if entry.operation == Operation::Put {
                out.insert(node, entry.revision);
            }
        }
    }
    ctx.ok();
    Ok(out)
}

/// Publishes the leaves of `node`'s members, frees its names and removes
/// its key. Returns the last leave's sequence, or `None` if it must be tried
/// again.
async fn announce(ctx: &Arc<Ctx>, node: &NodeId) -> Option<u64> {
    let members = ctx.state.lock().roster.members_of(node);
    if members.is_empty() {
        log::debug!(
            "room {}: node {node} is gone; freeing its names",
            ctx.config.room
        );
    } else {
        log::warn!(
            "room {}: node {node} is dead; announcing its {} members",
            ctx.config.room,
            members.len()
        );
    }
    let mut last = 0;
    for m in members {
        let record = Record::Leave {
            node: node.clone(),
            member: m.id,
            name: m.name.to_string(),
            reason: LeaveReason::NodeDied,
        };
        let subject = ctx.member_subject(node, m.id);
        let id = format!("x.{node}.{}", m.id);
        match ctx.publish(subject, record.encode(), &id).await {
            Ok(seq) => last = last.max(seq),
            Err(PublishFailure::Refused(why)) => {
                log::error!("room {}: a leave refused: {why}", ctx.config.room);
                return None;
            }
            Err(PublishFailure::Stopped) => return None,
        }
    }
    if let Err(e) = free_names(ctx, node).await {
        log::debug!("room {}: freeing names failed: {e}", ctx.config.room);
        return None;
    }
    if let Err(e) = ctx.nodes.delete(node.as_str()).await {
        log::debug!(
            "room {}: removing a dead heartbeat failed: {e}",
            ctx.config.room
        );
        return None;
    }
    Some(last)
}

/// Deletes every name `node` holds (unless taken over meanwhile).
async fn free_names(ctx: &Arc<Ctx>, node: &NodeId) -> Result<(), async_nats::Error> {
    let mut held = Vec::new();
    for key in bucket_keys(&ctx.names).await? {
        if let Some(entry) = ctx.names.entry(key.as_str()).await? {
            if entry.operation == Operation::Put
                && claims::owner(&entry.value).is_some_and(|(n, _)| n == *node)
            {
                held.push((key, entry.revision));
            }
        }
    }
    for (key, revision) in held {
        claims::release(ctx.clone(), key, revision).await;
    }
    Ok(())
}
