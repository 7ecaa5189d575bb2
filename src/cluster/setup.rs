//! Start-up: connecting to NATS and making (or finding) the room's stream
//! and its two key-value buckets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::bridge::{Ctx, State};
use super::event::LinkSink;
use super::names::{NodeId, RoomName};
use super::roster::Roster;
use super::LinkConfig;

/// How many times finding or making the stream or a bucket (and the first
/// write to it) is tried. Nodes that start together race to make them, and
/// nats-server 2.9 may answer a loser "subjects overlap with an existing
/// stream" rather than finding the stream the winner just made, or refuse
/// a write to it for a moment; the next try finds it, or writes.
const MAKE_TRIES: u32 = 5;

/// The pause between those tries.
const MAKE_PAUSE: Duration = Duration::from_millis(50);

/// Runs `attempt` until it succeeds, at most [`MAKE_TRIES`] times; the
/// last error otherwise.
async fn retried<T, E, F>(mut attempt: impl FnMut() -> F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tries < MAKE_TRIES => {
                log::debug!("setting up the room, retried: {e}");
                tries += 1;
                tokio::time::sleep(MAKE_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects and makes (or finds) the stream and the buckets.
pub(crate) async fn setup(
    config: LinkConfig,
    node: NodeId,
    sink: Box<dyn LinkSink>,
    stopped: Arc<AtomicBool>,
) -> Result<Ctx, String> {
    let room: RoomName = config.room.clone();
    let (conn_tx, conn_rx) = watch::channel(0u64);
    let conn_tx = Arc::new(conn_tx);
    let room_for_log = room.clone();
    let options = async_nats::ConnectOptions::new()
        .name(format!("chatcore {room} {node}"))
        .connection_timeout(config.connect_timeout)
        .ping_interval(Duration::from_secs(1))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).clamp(50, 250))
        })
        .event_callback(move |event| {
            let conn_tx = conn_tx.clone();
            let room = room_for_log.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        log::info!("room {room}: connected to NATS");
                        conn_tx.send_modify(|n| *n += 1)
                    }
                    async_nats::Event::Disconnected => {
                        log::warn!("room {room}: disconnected from NATS")
                    }
                    other => log::debug!("room {room}: NATS {other}"),
                }
            }
        });
    let client = options
        .connect(config.url.as_str())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(1));

    let keep = config.keep_messages.max(config.history as i64).max(2);
    let stream_config = stream::Config {
        name: room.stream(),
        subjects: vec![format!("{}.>", room.subject_prefix())],
        max_messages_per_subject: keep,
        max_bytes: config.max_bytes,
        discard: if config.max_bytes > 0 {
            stream::DiscardPolicy::New
        } else {
            stream::DiscardPolicy::Old
        },
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    retried(|| js.get_or_create_stream(stream_config.clone()))
        .await
        .map_err(|e| format!("cannot set up the stream {}: {e}", room.stream()))?;
    let names = bucket(&js, room.names_bucket(), Duration::ZERO).await?;
    let nodes = bucket(&js, room.nodes_bucket(), Duration::from_secs(60)).await?;
    // A bucket another node has just made may not take writes for a
    // moment ("no stream found for given subject"): retried too.
    retried(|| nodes.put(node.as_str(), Bytes::from_static(b"0")))
        .await
        .map_err(|e| format!("cannot write this node's heartbeat: {e}"))?;

    let prefix = room.subject_prefix();
    let stream = room.stream();
    let history = config.history;
    Ok(Ctx {
        node: node.clone(),
        js,
        stream,
        prefix,
        names,
        nodes,
        state: Mutex::new(State {
            roster: Roster::new(node, history),
            applied: 0,
            live: false,
            waiting: VecDeque::new(),
            published: 0,
            sink,
            fatal: false,
            closing: false,
            claims: HashMap::new(),
            claiming: HashSet::new(),
            abandoned: HashSet::new(),
        }),
        last_ok: Mutex::new(Instant::now()),
        failed: AtomicBool::new(false),
        stopped,
        dead: Mutex::new(HashSet::new()),
        connections: conn_rx,
        config,
    })
}

/// Finds or makes a key-value bucket (history 1, on file).
///
/// The bucket's stream is made here with the key-value conventions
/// (`KV_<bucket>`, subjects `$KV.<bucket>.>`, roll-ups allowed, deletes
/// denied, direct gets): async-nats' own `create_key_value` first asks for
/// the account's info, which it cannot parse from a nats-server 2.9.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> Result<kv::Store, String> {
    let window = Duration::from_secs(120);
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        duplicate_window: if max_age.is_zero() {
            window
        } else {
            window.min(max_age)
        },
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    retried(|| js.get_or_create_stream(config.clone()))
        .await
        .map_err(|e| format!("cannot set up the bucket {name}: {e}"))?;
    js.get_key_value(name.as_str())
        .await
        .map_err(|e| format!("cannot open the bucket {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn a_lost_race_to_make_the_stream_is_tried_again() {
        // The first try loses the race; the second finds the stream.
        let tries = Cell::new(0);
        let outcome = block_on(retried(|| {
            tries.set(tries.get() + 1);
            let first = tries.get() == 1;
            async move {
                if first {
                    Err("subjects overlap with an existing stream")
                } else {
                    Ok("found")
                }
            }
        }));
        assert_eq!(outcome, Ok("found"));
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn a_lasting_failure_is_the_last_error_after_a_few_tries() {
        let tries = Cell::new(0);
        let outcome: Result<(), String> = block_on(retried(|| {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { Err(format!("refused {n}")) }
        }));
        assert_eq!(outcome, Err(format!("refused {MAKE_TRIES}")));
        assert_eq!(tries.get(), MAKE_TRIES);
    }
}
