//! `tcp_server`'s room: the in-process room, or, with `--nats`, this server
//! as one node of a room shared by every server on the same NATS server
//! and room name (the crate's `nats` feature). `--history` works with both.

use std::sync::Arc;

use chatcore::room::Room;
use chatcore::{ChatRoom, Shutdown};

/// The flags that choose the room.
#[derive(Debug, clap::Args)]
pub struct RoomArgs {
    /// Public lines replayed to each newcomer, right after its welcome
    /// (with --nats, from the whole room, outliving every node).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub history: usize,
    /// Make this server one node of a room shared through the NATS server
    /// at URL (JetStream enabled, e.g. nats://127.0.0.1:4222). Needs the
    /// crate's `nats` feature: `cargo run --features nats --example
    /// tcp_server -- --nats <URL>`.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The room, with --nats: 1 to 32 letters, digits, '-' or '_'.
    #[arg(long, default_value = "chat", value_name = "NAME")]
    pub room: String,
}

/// The room the server serves.
pub struct ServerRoom {
    room: Room,
    /// This server as a node of a room on NATS.
    #[cfg(feature = "nats")]
    node: Option<Arc<chatcore::cluster::ClusterRoom>>,
}

impl ServerRoom {
    /// Makes the room the flags ask for: with `--nats`, connects to NATS
    /// and reads the room back (an error within about 8 s when NATS cannot
    /// be reached).
    pub fn open(args: &RoomArgs) -> Result<ServerRoom, String> {
        match &args.nats {
            Some(url) => Self::open_node(url, args),
            None => {
                if args.room != "chat" {
                    log::warn!("--room is unused without --nats");
                }
                Ok(ServerRoom {
                    room: Arc::new(ChatRoom::with_history(args.history)).into(),
                    #[cfg(feature = "nats")]
                    node: None,
                })
            }
        }
    }

    #[cfg(feature = "nats")]
    fn open_node(url: &str, args: &RoomArgs) -> Result<ServerRoom, String> {
        use chatcore::cluster::{ClusterRoom, LinkConfig, RoomName};

        let name = RoomName::new(&args.room)
            .map_err(|error| format!("invalid --room {:?}: {error}", args.room))?;
        let mut config = LinkConfig::new(url, name.clone());
        config.history = args.history;
        log::info!("connecting to NATS at {url} for the room {name}");
        let node = ClusterRoom::connect(config).map_err(|error| error.to_string())?;
        if let Some(id) = node.node_id() {
            log::info!("node {id} of the room {name}");
        }
        Ok(ServerRoom {
            room: node.clone().into(),
            node: Some(node),
        })
    }

    #[cfg(not(feature = "nats"))]
    fn open_node(_url: &str, _args: &RoomArgs) -> Result<ServerRoom, String> {
        Err(
            "--nats needs the crate's feature `nats`, which this build lacks: \
             run `cargo run --features nats --example tcp_server -- --nats <URL>`"
                .into(),
        )
    }

    /// The room, for the server.
    pub fn room(&self) -> Room {
        self.room.clone()
    }

    /// A node cut off from NATS for too long shuts the server down, as on
    /// SIGTERM (and [`ServerRoom::finish`] then says to exit with status 1).
    pub fn shut_down_on_failure(&self, shutdown: Shutdown) {
        #[cfg(feature = "nats")]
        if let Some(node) = &self.node {
            node.on_fatal(move |reason| {
                log::error!("shutting down: {reason}");
                shutdown.trigger();
            });
        }
        #[cfg(not(feature = "nats"))]
        drop(shutdown);
    }

    /// After the server has stopped: a node says goodbye to the room (its
    /// remaining members' leaves, their names freed). Returns `false` when
    /// the process is to exit with status 1 (the node was cut off from
    /// NATS).
    pub fn finish(self) -> bool {
        #[cfg(feature = "nats")]
        if let Some(node) = self.node {
            if let Some(reason) = node.fatal_reason() {
                log::error!("the room link failed: {reason}");
                return false;
            }
            if let Err(error) = node.close_link(std::time::Duration::from_secs(5)) {
                log::warn!("{error}: the other nodes will announce this node's members");
            }
        }
        true
    }
}
