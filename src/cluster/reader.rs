//! The reader: one ordered read of the room's stream, applied in sequence
//! order, exactly once.
//!
//! It reads with an ephemeral pull consumer from the next sequence it needs.
//! After anything odd (the client reconnected, a consumer sequence out of
//! step, a missed consumer heartbeat, an error) it drops the consumer and
//! makes a new one from that same next sequence, so nothing is skipped and
//! nothing applied twice. At start it reads the stream from its first
//! retained message up to the last one as of its start (the read-back:
//! roster and history, delivered to nobody), and then goes live. A live gap
//! in the sequence means messages were discarded before this node read them:
//! the link fails rather than deliver a room with holes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::bridge::Ctx;
use super::wire::Record;

/// Pause before making a consumer again after a failure.
const PAUSE: Duration = Duration::from_millis(100);

pub(crate) async fn run(ctx: Arc<Ctx>, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let start_last = loop {
        if ctx.is_failed() {
            return;
        }
        match ctx.js.get_stream(ctx.stream.as_str()).await {
            Ok(stream) => break stream.cached_info().state.last_sequence,
            Err(e) => log::debug!("room {}: stream info retried: {e}", ctx.config.room),
        }
        tokio::time::sleep(PAUSE).await;
    };
    if start_last == 0 {
        go_live(&ctx, &mut ready);
    }
    let mut connections = ctx.connections.clone();
    connections.borrow_and_update();
    let mut next: u64 = 1;
    loop {
        if ctx.is_failed() {
            return;
        }
        let consumer = match make_consumer(&ctx, next).await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("room {}: consumer retried: {e}", ctx.config.room);
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        };
        let name = consumer.cached_info().name.clone();
        let messages = consumer
            .stream()
            .max_messages_per_batch(1000)
            .expires(Duration::from_secs(4))
            .heartbeat(Duration::from_secs(1))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                log::debug!("room {}: consumer stream retried: {e}", ctx.config.room);
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        };
        let mut consumer_seq = 0;
        let reconnected = loop {
            let item = tokio::select! {
                item = messages.next() => item,
                _ = connections.changed() => break true,
            };
            let message = match item {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    log::debug!("room {}: consumer ended: {e}", ctx.config.room);
                    break false;
                }
                None => break false,
            };
            let Ok(info) = message.info() else {
                break false;
            };
            if info.consumer_sequence != consumer_seq + 1 {
                break false;
            }
            consumer_seq = info.consumer_sequence;
            let seq = info.stream_sequence;
            let pending = info.pending;
            if seq < next {
                continue; // already applied
            }
            // Holes are normal in what was retained before the start (old
            // lines discarded by the limits), never after it.
            let live_from = next.max(start_last + 1);
            if seq > live_from {
                ctx.fail(format!(
                    "room events {live_from} to {} were discarded before this node read them",
                    seq - 1
                ));
                return;
            }
            ctx.ok();
            let record = match Record::decode(&message.payload) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("room {}: event {seq} skipped: {e}", ctx.config.room);
                    None
                }
            };
            ctx.state.lock().apply(seq, record);
            next = seq + 1;
            if ready.is_some() && (seq >= start_last || pending == 0) {
                go_live(&ctx, &mut ready);
            }
        };
        drop(messages);
        let js = ctx.js.clone();
        let stream = ctx.stream.clone();
        tokio::spawn(async move {
            let _ = js.delete_consumer_from_stream(&name, &stream).await;
        });
        if !reconnected {
            tokio::time::sleep(PAUSE).await;
        }
    }
}

fn go_live(ctx: &Ctx, ready: &mut Option<oneshot::Sender<()>>) {
    ctx.state.lock().live = true;
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
}

async fn make_consumer(ctx: &Ctx, next: u64) -> Result<PullConsumer, async_nats::Error> {
    let stream = ctx.js.get_stream_no_info(ctx.stream.as_str()).await?;
    let deliver_policy = if next <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: next,
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}
