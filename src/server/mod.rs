//! The server: wires a transport into a room.

mod config;
mod connections;
mod event_loop;
mod shutdown;
mod threaded;

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use config::{ConfigError, ServerConfig, DEFAULT_MAX_CLIENTS, DEFAULT_NAME_TIMEOUT};
pub use shutdown::Shutdown;

use crate::error::ServerError;
use crate::room::ChatRoom;
use crate::transport::{TcpTransport, Transport};
use connections::Connections;
use event_loop::LoopHandle;

/// How long the accept loop pauses when the process is out of file
/// descriptors (or memory) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a closing connection waits, after its last line, for the client
/// to close its side: closing with unread input would reset the connection
/// and could destroy lines the client has not read yet.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for aborted connections to go, past the grace.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// A chat server: wires a [`Transport`] into a [`ChatRoom`].
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
    room: Arc<ChatRoom>,
    config: ServerConfig,
    connections: Arc<Connections>,
    shutdown: Shutdown,
}

impl<T: Transport> Server<T> {
    /// A server with a new, empty room.
    pub fn new(transport: T, config: ServerConfig) -> Self {
        Self::with_room(transport, config, Arc::new(ChatRoom::new()))
    }

    /// A server for an existing room (which it will close at shutdown).
    pub fn with_room(transport: T, config: ServerConfig, room: Arc<ChatRoom>) -> Self {
        let transport = Arc::new(transport);
        let connections = Connections::new(config.max_clients);
        // Weak: a Shutdown handle may outlive the server, and must not keep
        // its listener open once `run` has returned.
        let waker = Arc::downgrade(&transport);
        let shutdown = Shutdown::new(
            room.clone(),
            connections.clone(),
            Box::new(move || {
                if let Some(transport) = waker.upgrade() {
                    transport.wake();
                }
            }),
        );
        Server {
            transport,
            room,
            config,
            connections,
            shutdown,
        }
    }

    /// The room.
    pub fn room(&self) -> &Arc<ChatRoom> {
        &self.room
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
    /// Fails at once if the limits cannot work together
    /// ([`ServerConfig::validate`]), and later only if the transport fails in
    /// a way that retrying cannot mend.
    pub fn run(self) -> Result<(), ServerError> {
        self.config.validate()?;
        let result = self.accept_loop(|connection| {
            threaded::serve(connection, &self.room, &self.config, &self.connections);
        });
        self.shutdown.trigger();
        self.finish();
        result
    }

    /// Accepts until shut down, handing each connection to `dispatch`.
    fn accept_loop(&self, mut dispatch: impl FnMut(T::Connection)) -> Result<(), ServerError> {
        loop {
            let accepted = self.transport.accept();
            if self.shutdown.is_triggered() {
                if let Ok(connection) = accepted {
                    // Told `Server is shutting down.` like any other.
                    dispatch(connection);
                }
                return Ok(());
            }
            match accepted {
                Ok(connection) => dispatch(connection),
                Err(error) if is_out_of_resources(&error) => {
                    log::warn!(
                        "accept failed ({error}) with {} connections open; retrying",
                        self.connections.len()
                    );
                    thread::sleep(ACCEPT_BACKOFF);
                }
                Err(error) if is_transient(&error) => {
                    log::debug!("accept failed: {error}");
                }
                Err(error) => return Err(ServerError::Accept(error)),
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

impl Server<TcpTransport> {
    /// Like [`Server::run`], but serves connections from `loops` event loops
    /// (one per core is right; 0 means one per core) on non-blocking
    /// sockets, with the accept loop on the calling thread.
    pub fn run_event_loops(self, loops: usize) -> Result<(), ServerError> {
        self.config.validate()?;
        let loops = match loops {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut handles = Vec::with_capacity(loops);
        for index in 0..loops {
            match LoopHandle::spawn(
                index,
                self.room.clone(),
                self.config.clone(),
                self.connections.clone(),
            ) {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    handles.into_iter().for_each(LoopHandle::stop);
                    return Err(ServerError::EventLoop(error));
                }
            }
        }
        log::info!("serving from {loops} event loops");
        let mut next = 0;
        let result = self.accept_loop(|connection| {
            // Round robin over the loops that still run (one whose epoll
            // failed has closed its connections and logged why).
            let running = (0..handles.len())
                .map(|i| (next + i) % handles.len())
                .find(|&i| handles[i].is_running());
            match running {
                Some(i) => {
                    handles[i].hand_over(connection.into_stream());
                    next = i + 1;
                }
                None => log::error!("no event loop runs; dropped a connection"),
            }
        });
        self.shutdown.trigger();
        self.finish();
        handles.into_iter().for_each(LoopHandle::stop);
        result
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

/// Out of file descriptors, buffers or memory: worth a pause, not an exit.
fn is_out_of_resources(error: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(
        error.raw_os_error(),
        Some(ENFILE | EMFILE | ENOBUFS | ENOMEM)
    ) || error.kind() == io::ErrorKind::OutOfMemory
}

/// A failure of one incoming connection, not of the listener.
fn is_transient(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted
            | ConnectionReset
            | Interrupted
            | WouldBlock
            | TimedOut
            | PermissionDenied
            | InvalidData
            | Other
    ) || matches!(error.raw_os_error(), Some(71)) // EPROTO
}
