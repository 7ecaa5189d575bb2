//! The server: wires a transport into a room.

mod accept;
pub(crate) mod close;
mod config;
mod connections;
mod event_loop;
mod listener;
mod loops;
mod shutdown;
mod threaded;

use std::sync::{Arc, Weak};
use std::thread;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

pub use config::{ConfigError, ServerConfig, DEFAULT_MAX_CLIENTS, DEFAULT_NAME_TIMEOUT};
pub use listener::{LayerFactory, Listener};
pub use shutdown::Shutdown;

use crate::error::ServerError;
use crate::room::{ChatRoom, Room};
use crate::transport::{TcpTransport, Transport};
use accept::{accept_failed, Backoff};
use connections::Connections;

/// How long a closing connection waits, after its last line, for the client
/// to close its side: closing with unread input would reset the connection
/// and could destroy lines the client has not read yet.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for aborted connections to go, past the grace.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// A chat server: wires a [`Transport`] into a [`ChatRoom`] (or into a
/// [`Room`] served by a [`RoomBackend`](crate::room::RoomBackend), such as
/// one room across several servers).
///
/// [`Server::run`] serves any transport with a reader and a writer thread per
/// connection. Over TCP, [`Server::run_event_loops`] serves every connection
/// from a few event loops instead (non-blocking sockets, epoll readiness),
/// so that an idle member costs a few hundred bytes rather than two threads.
/// Both run the same [`Session`](crate::Session) code.
///
/// ```no_run
/// use chatcore::{Server, ServerConfig, TcpTransport};
///
/// let transport = TcpTransport::bind("127.0.0.1:0")?;
/// println!("listening on {}", transport.local_addr());
/// let server = Server::new(transport, ServerConfig::default());
/// let shutdown = server.shutdown_handle();
/// // Another thread (a signal handler, a test) may call shutdown.trigger().
/// # shutdown.trigger();
/// server.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server<T: Transport> {
    transport: Arc<T>,
    room: Room,
    config: ServerConfig,
    connections: Arc<Connections>,
    shutdown: Shutdown,
    /// Listeners added with [`Server::add_listener`].
    listeners: Vec<Listener>,
    /// What shutdown wakes besides the transport: the added listeners.
    wake_too: Arc<Mutex<Vec<Weak<TcpTransport>>>>,
}

impl<T: Transport> Server<T> {
    /// A server with a new, empty room.
    pub fn new(transport: T, config: ServerConfig) -> Self {
        Self::with_room(transport, config, Arc::new(ChatRoom::new()))
    }

    /// A server for an existing room (which it will close at shutdown): an
    /// `Arc<ChatRoom>`, or any [`Room`].
    pub fn with_room(transport: T, config: ServerConfig, room: impl Into<Room>) -> Self {
        let room = room.into();
        let transport = Arc::new(transport);
        let connections = Connections::new(config.max_clients);
        // Weak: a Shutdown handle may outlive the server, and must not keep
        // its listener open once `run` has returned.
        let waker = Arc::downgrade(&transport);
        let wake_too: Arc<Mutex<Vec<Weak<TcpTransport>>>> = Arc::default();
        let wake_listeners = wake_too.clone();
        let shutdown = Shutdown::new(
            room.clone(),
            connections.clone(),
            Box::new(move || {
                if let Some(transport) = waker.upgrade() {
                    transport.wake();
                }
                for listener in wake_listeners.lock().iter().filter_map(Weak::upgrade) {
                    listener.wake();
                }
            }),
        );
        Server {
            transport,
            room,
            config,
            connections,
            shutdown,
            listeners: Vec::new(),
            wake_too,
        }
    }

    /// Serves `listener` too, in the same room with the same limits (the
    /// client limit counts the connections of every listener together).
    /// The event loops ([`Server::run_event_loops`]) run its layers on
    /// their own threads; [`Server::run`] accepts its connections on a
    /// thread of its own and runs their layers on each connection's
    /// threads.
    pub fn add_listener(&mut self, listener: Listener) {
        self.wake_too
            .lock()
            .push(Arc::downgrade(listener.shared_transport()));
        self.listeners.push(listener);
    }

    /// The listeners added with [`Server::add_listener`], in that order.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The room of this server's members (for a [`Room`] with a back end,
    /// its [`local`](Room::local) room).
    pub fn room(&self) -> &Arc<ChatRoom> {
        self.room.local()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The limits in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// How many connections are open, in the handshake or not.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Accepts and serves connections until shut down, then waits for every
    /// connection to close (or the grace period to pass) and returns. The
    /// server, and with it the transport (a TCP listener), is gone by then:
    /// later connection attempts are refused.
    ///
    /// Each connection has a reader and a writer thread. The listeners
    /// added with [`Server::add_listener`] each have an accept thread of
    /// their own; their layers (a TLS or WebSocket handshake included) run
    /// on each connection's threads, never on an accept thread.
    ///
    /// Fails at once if the limits cannot work together
    /// ([`ServerConfig::validate`]), and later only if the transport, or an
    /// added listener, fails in a way that retrying cannot mend: the server
    /// then shuts down as on [`Shutdown::trigger`] and returns that error.
    pub fn run(self) -> Result<(), ServerError> {
        self.config.validate()?;
        let result = thread::scope(|scope| {
            let mut result = Ok(());
            let mut accepting = Vec::new();
            for listener in &self.listeners {
                let spawned = thread::Builder::new()
                    .name("chat-accept".into())
                    .spawn_scoped(scope, || self.accept_listener(listener));
                match spawned {
                    Ok(thread) => accepting.push(thread),
                    Err(error) => {
                        log::error!("no accept thread for {}: {error}", listener.label());
                        result = Err(ServerError::Accept(error));
                        self.shutdown.trigger();
                        break;
                    }
                }
            }
            if result.is_ok() {
                result = self.accept_loop(&*self.transport, |connection| {
                    threaded::serve(connection, &self.room, &self.config, &self.connections);
                });
            }
            // The other accept loops stop too (shutdown wakes them).
            self.shutdown.trigger();
            for thread in accepting {
                let accepted = thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if result.is_ok() {
                    result = accepted;
                }
            }
            result
        });
        self.shutdown.trigger();
        self.finish();
        result
    }

    /// The accept loop of an added listener, on its own thread: a broken
    /// listener shuts the whole server down.
    fn accept_listener(&self, listener: &Listener) -> Result<(), ServerError> {
        let layers = listener.factory();
        let result = self.accept_loop(listener.transport(), |connection| {
            threaded::serve_listener(
                connection,
                layers.clone(),
                &self.room,
                &self.config,
                &self.connections,
            );
        });
        if let Err(error) = &result {
            log::error!("the {} listener failed: {error}", listener.label());
            self.shutdown.trigger();
        }
        result
    }

    /// Accepts from `transport` until shut down, handing each connection
    /// to `dispatch`. A failed accept is retried after a pause (see
    /// [`Backoff`]) unless the listener itself is broken.
    fn accept_loop<U: Transport>(
        &self,
        transport: &U,
        mut dispatch: impl FnMut(U::Connection),
    ) -> Result<(), ServerError> {
        let mut backoff = Backoff::default();
        loop {
            let accepted = transport.accept();
            if self.shutdown.is_triggered() {
                if let Ok(connection) = accepted {
                    // Told `Server is shutting down.` like any other.
                    dispatch(connection);
                }
                return Ok(());
            }
            match accepted {
                Ok(connection) => {
                    backoff.reset();
                    dispatch(connection);
                }
                Err(error) => {
                    let pause = accept_failed(error, &mut backoff, self.connections.len())?;
                    thread::sleep(pause);
                }
            }
        }
    }

    /// After shutdown: lets connections finish writing, then closes them.
    fn finish(&self) {
        // A grace too long to add to now means: wait as long as it takes.
        let grace = Instant::now().checked_add(self.config.shutdown_grace);
        if !self.connections.wait_empty(grace) {
            log::warn!(
                "{} connections still writing after the grace period; closing them",
                self.connections.len()
            );
            self.connections.abort_all();
            self.connections
                .wait_empty(Instant::now().checked_add(ABORT_WAIT));
        }
        log::info!("server stopped");
    }
}

impl<T: Transport> std::fmt::Debug for Server<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("room", &self.room)
            .field("connections", &self.connections.len())
            .finish()
    }
}
