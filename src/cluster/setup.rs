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
    let mut tries = 0;
    let (names, nodes) = loop {
        tries += 1;
        match make_room(&js, &room, &stream_config, &node).await {
            Ok(made) => break made,
            Err(error) if tries < SETUP_TRIES => {
                log::debug!("room {room}: setting up again after: {error}");
                tokio::time::sleep(SETUP_PAUSE).await;
            }
            Err(error) => return Err(error),
        }
    };

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
        asked: Mutex::new(None),
        failed: AtomicBool::new(false),
        stopped,
        dead: Mutex::new(HashSet::new()),
        connections: conn_rx,
        config,
    })
}

/// How many times start-up tries to make (or find) the room's stream and
/// buckets and to write its first heartbeat. Nodes that start at the same
/// moment on a new room all make them, and nats-server can answer those
/// that lose the race that their stream's subjects overlap the winner's
/// stream, or that a bucket's first write has no stream yet; the next try
/// finds everything made.
const SETUP_TRIES: u32 = 5;

/// The pause between two tries.
const SETUP_PAUSE: Duration = Duration::from_millis(100);

/// Makes (or finds) the stream and the buckets, and writes this node's
/// first heartbeat. Returns the names and the nodes buckets.
async fn make_room(
    js: &jetstream::Context,
    room: &RoomName,
    stream_config: &stream::Config,
    node: &NodeId,
) -> Result<(kv::Store, kv::Store), String> {
    js.get_or_create_stream(stream_config.clone())
        .await
        .map_err(|e| format!("cannot set up the stream {}: {e}", room.stream()))?;
    let names = bucket(js, room.names_bucket(), Duration::ZERO).await?;
    let nodes = bucket(js, room.nodes_bucket(), Duration::from_secs(60)).await?;
    nodes
        .put(node.as_str(), Bytes::from_static(b"0"))
        .await
        .map_err(|e| format!("cannot write this node's heartbeat: {e}"))?;
    Ok((names, nodes))
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
    js.get_or_create_stream(config)
        .await
        .map_err(|e| format!("cannot set up the bucket {name}: {e}"))?;
    js.get_key_value(name.as_str())
        .await
        .map_err(|e| format!("cannot open the bucket {name}: {e}"))
}
