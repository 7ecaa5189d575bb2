//! Nodes of a room across servers for the cluster tests: in this process
//! (a `Server` on a `ClusterRoom`, on 127.0.0.1 port 0) or as `tcp_server
//! --nats` processes (see `procs`), with clients that join them and read
//! with bounded waits.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use chatcore::cluster::{ClusterRoom, LinkConfig, RoomName};
use chatcore::{Server, ServerConfig, ServerError, Shutdown, TcpTransport};

use crate::common::{Client, Io, TIMEOUT};
use crate::nats::NatsServer;

/// The link's settings for a test room on `nats`.
pub fn link_config(nats: &NatsServer, room: &str, history: usize) -> LinkConfig {
    let mut config = LinkConfig::new(nats.url(), RoomName::new(room).expect("a valid room name"));
    config.history = history;
    config
}

/// A node in this process.
pub struct Node {
    pub label: String,
    /// Its TCP line listener.
    pub addr: SocketAddr,
    /// Its WebSocket listener, if it has one.
    pub ws_addr: Option<SocketAddr>,
    pub cluster: Arc<ClusterRoom>,
    shutdown: Shutdown,
    stopped: Option<mpsc::Receiver<Result<(), ServerError>>>,
}

impl Node {
    /// Starts a node of `config`'s room, driven as `io` says.
    pub fn start(label: &str, config: LinkConfig, io: Io) -> Node {
        Self::start_with(label, config, io, ServerConfig::default(), false)
    }

    /// [`Node::start`] with the server's limits, and a WebSocket listener
    /// too if `ws`.
    pub fn start_with(
        label: &str,
        config: LinkConfig,
        io: Io,
        limits: ServerConfig,
        ws: bool,
    ) -> Node {
        let _ = env_logger::builder().is_test(true).try_init();
        let cluster = ClusterRoom::connect(config).expect("the node connects to NATS");
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = transport.local_addr();
        let mut server = Server::with_room(transport, limits, cluster.clone());
        let mut ws_addr = None;
        if ws {
            let transport = TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            ws_addr = Some(transport.local_addr());
            server.add_listener(chatcore::server::Listener::ws(transport));
        }
        let shutdown = server.shutdown_handle();
        let on_fatal = shutdown.clone();
        cluster.on_fatal(move |_| on_fatal.trigger());
        let (tx, stopped) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(match io {
                Io::Threads => server.run(),
                Io::Events => server.run_event_loops(2),
            });
        });
        Node {
            label: label.to_owned(),
            addr,
            ws_addr,
            cluster,
            shutdown,
            stopped: Some(stopped),
        }
    }

    /// A client connected to this node (`NAME` read).
    pub fn connect(&self, name: &str) -> Client {
        let mut client = Client::connect(self.addr);
        client.name = format!("{name}@{}", self.label);
        client.expect("NAME");
        client
    }

    /// A member of this node: joined as `name`, its welcome and own join
    /// notice read; returns it and the history it was replayed.
    pub fn join_with_history(&self, name: &str) -> (Client, Vec<String>) {
        let mut client = self.connect(name);
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        let history = client.read_until(&format!("{name} has joined the chat."));
        (client, history)
    }

    /// A member of this node, joined as `name` (no history expected).
    pub fn join(&self, name: &str) -> Client {
        let (client, history) = self.join_with_history(name);
        assert!(history.is_empty(), "{name}: unexpected history {history:?}");
        client
    }

    /// Shuts the server down, waits for it, then says goodbye to the room.
    pub fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(stopped) = self.stopped.take() {
            let ran = stopped
                .recv_timeout(TIMEOUT)
                .expect("the node's server stops");
            ran.expect("the node's server ran");
        }
        self.cluster
            .close_link(Duration::from_secs(5))
            .expect("the goodbye is said");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stopped.is_some() {
            self.shutdown.trigger();
            if let Some(stopped) = self.stopped.take() {
                let _ = stopped.recv_timeout(TIMEOUT);
            }
            let _ = self.cluster.close_link(Duration::from_secs(5));
        }
    }
}

/// Reads `n` lines.
pub fn lines(client: &mut Client, n: usize) -> Vec<String> {
    (0..n).map(|_| client.line()).collect()
}
