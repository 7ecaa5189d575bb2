//! The event-loop driver's accept side: the listeners (the server's own and
//! those added with [`Server::add_listener`]) are polled, and each time one
//! is ready every pending connection is accepted and dealt, in batches, to
//! the event loops that still run, with what makes its layers. Nothing of a
//! TLS or WebSocket handshake runs here.

use std::io;
use std::sync::Arc;
use std::thread;

use mio::net::TcpListener as MioListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::accept::{accept_failed, Backoff};
use super::event_loop::{Accepted, LoopHandle};
use super::listener::LayerFactory;
use super::Server;
use crate::error::ServerError;
use crate::transport::{accept_nonblocking, TcpTransport};

/// The accept thread's token for "an event loop exited" (listener `i` has
/// token `i`).
const LOOP_EXITED: Token = Token(usize::MAX);
/// Connections handed to an event loop at once at most: a burst is handed
/// over in batches (one lock, one wake-up each), and the first of a burst
/// need not wait until the last is accepted.
const HANDOVER_BATCH: usize = 64;

impl Server<TcpTransport> {
    /// Like [`Server::run`], but serves connections from `loops` event loops
    /// (one per core is right; 0 means one per core) on non-blocking
    /// sockets, with the accept loop on the calling thread. The listeners
    /// added with [`Server::add_listener`] are served by the same loops,
    /// their layers (TLS, WebSocket, a stack of the user's) included.
    ///
    /// The accept loop polls the listeners and, each time one is ready,
    /// accepts every pending connection, handing them to the loops in
    /// batches. If every event loop has exited (their epoll failed), it
    /// returns [`ServerError::NoEventLoop`] rather than accept connections
    /// that nothing would serve.
    pub fn run_event_loops(self, loops: usize) -> Result<(), ServerError> {
        self.run_loops(loops, |_| {})
    }

    /// [`Server::run_event_loops`], with `started` called once the loops
    /// run (tests use it to make them fail).
    fn run_loops(
        self,
        loops: usize,
        started: impl FnOnce(&[LoopHandle]),
    ) -> Result<(), ServerError> {
        self.config.validate()?;
        let loops = match loops {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (poll, mut listeners, on_exit) = self.poll_listeners().map_err(ServerError::Accept)?;
        for (i, (listener, _)) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(listener, Token(i), Interest::READABLE)
                .map_err(ServerError::Accept)?;
        }
        let mut handles = Vec::with_capacity(loops);
        for index in 0..loops {
            match LoopHandle::spawn(
                index,
                self.room.clone(),
                self.config.clone(),
                self.connections.clone(),
                Some(on_exit.clone()),
            ) {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    handles.into_iter().for_each(LoopHandle::stop);
                    return Err(ServerError::EventLoop(error));
                }
            }
        }
        log::info!("serving from {loops} event loops");
        started(&handles);
        let result = self.accept_into_loops(poll, &listeners, &handles);
        self.shutdown.trigger();
        self.finish();
        handles.into_iter().for_each(LoopHandle::stop);
        result
    }

    /// The accept thread's poll, the listeners to register in it (the
    /// server's own first) with what makes their connections' layers, and
    /// the waker that event loops signal when they exit.
    #[allow(clippy::type_complexity)]
    fn poll_listeners(
        &self,
    ) -> io::Result<(Poll, Vec<(MioListener, Option<LayerFactory>)>, Arc<Waker>)> {
        let poll = Poll::new()?;
        let on_exit = Arc::new(Waker::new(poll.registry(), LOOP_EXITED)?);
        let mut listeners = vec![(self.transport.poll_listener()?, None)];
        for listener in &self.listeners {
            let polled = listener.transport().poll_listener()?;
            listeners.push((polled, listener.factory()));
        }
        Ok((poll, listeners, on_exit))
    }

    /// Accepts until shut down: at each readiness, every pending connection
    /// of every listener, dealt round robin to the loops that still run.
    fn accept_into_loops(
        &self,
        mut poll: Poll,
        listeners: &[(MioListener, Option<LayerFactory>)],
        handles: &[LoopHandle],
    ) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(16);
        let mut batches = Batches::new(handles);
        let mut backoff = Backoff::default();
        let mut pause = None;
        loop {
            if let Err(error) = poll.poll(&mut events, pause.take()) {
                if error.kind() != io::ErrorKind::Interrupted {
                    log::error!("polling the listener failed: {error}");
                    return Err(ServerError::Accept(error));
                }
            }
            // The listeners are edge-triggered: accept until each would
            // block (or a failure calls for a pause, after which poll's
            // timeout brings us back here).
            let mut drained = Ok(());
            for (listener, layers) in listeners {
                drained = self.drain(listener, layers, &mut batches, &mut backoff, &mut pause);
                if drained.is_err() || self.shutdown.is_triggered() {
                    break;
                }
            }
            batches.hand_over_all();
            drained?;
            if self.shutdown.is_triggered() {
                return Ok(());
            }
            if !handles.iter().any(LoopHandle::is_running) {
                log::error!("no event loop runs: the server stops");
                return Err(ServerError::NoEventLoop);
            }
        }
    }
}

impl Server<TcpTransport> {
    /// Accepts every pending connection of one listener (until it would
    /// block, the server shuts down, no loop runs, or a failure calls for a
    /// `pause`).
    fn drain(
        &self,
        listener: &MioListener,
        layers: &Option<LayerFactory>,
        batches: &mut Batches<'_>,
        backoff: &mut Backoff,
        pause: &mut Option<std::time::Duration>,
    ) -> Result<(), ServerError> {
        loop {
            if self.shutdown.is_triggered() {
                return Ok(());
            }
            match accept_nonblocking(listener) {
                Ok((stream, _)) => {
                    backoff.reset();
                    let accepted = Accepted {
                        stream,
                        layers: layers.clone(),
                    };
                    if !batches.push(accepted) {
                        return Ok(());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => {
                    let wait = accept_failed(error, backoff, self.connections.len())?;
                    *pause = Some(pause.map_or(wait, |p| p.min(wait)));
                    return Ok(());
                }
            }
        }
    }
}

/// Accepted connections on their way to the event loops, one batch per loop.
struct Batches<'a> {
    handles: &'a [LoopHandle],
    batches: Vec<Vec<Accepted>>,
    /// The loop the next connection goes to, if it still runs.
    next: usize,
}

impl<'a> Batches<'a> {
    fn new(handles: &'a [LoopHandle]) -> Self {
        Batches {
            handles,
            batches: handles.iter().map(|_| Vec::new()).collect(),
            next: 0,
        }
    }

    /// Adds a connection to the batch of the next loop that runs (handing
    /// the batch over once it is full). False, and the connection is
    /// closed, if no loop runs.
    fn push(&mut self, accepted: Accepted) -> bool {
        let count = self.handles.len();
        let Some(i) = (0..count)
            .map(|i| (self.next + i) % count)
            .find(|&i| self.handles[i].is_running())
        else {
            return false;
        };
        self.next = i + 1;
        self.batches[i].push(accepted);
        if self.batches[i].len() >= HANDOVER_BATCH {
            self.hand_over(i);
        }
        true
    }

    fn hand_over_all(&mut self) {
        for i in 0..self.batches.len() {
            if !self.batches[i].is_empty() {
                self.hand_over(i);
            }
        }
    }

    fn hand_over(&mut self, i: usize) {
        let count = self.batches[i].len();
        if !self.handles[i].hand_over(&mut self.batches[i]) {
            // It exited (and logged why) since the batch began.
            log::warn!("an event loop exited: closed {count} new connections");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::server::Shutdown;
    use crate::ServerConfig;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Runs a server on 127.0.0.1:0 with two event loops on its own
    /// thread; `started` gets the loops once they run.
    fn start(
        started: impl FnOnce(&[LoopHandle]) + Send + 'static,
    ) -> (
        std::net::SocketAddr,
        Shutdown,
        mpsc::Receiver<Result<(), ServerError>>,
    ) {
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind");
        let addr = transport.local_addr();
        let server = Server::new(transport, ServerConfig::default());
        let shutdown = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server.run_loops(2, started));
        });
        (addr, shutdown, rx)
    }

    /// Waits (bounded) until the loop has exited.
    fn wait_exited(handle: &LoopHandle) {
        let deadline = Instant::now() + TIMEOUT;
        while handle.is_running() {
            assert!(Instant::now() < deadline, "the event loop did not exit");
            thread::park_timeout(Duration::from_millis(2));
        }
    }

    fn expect_name(addr: std::net::SocketAddr) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("read NAME");
        assert_eq!(line, "NAME\n");
    }

    /// Bug: with every event loop gone (their epoll failed), the server
    /// went on accepting connections and dropping them, for ever.
    #[test]
    fn no_running_event_loop_ends_the_server_with_an_error() {
        let (_addr, _shutdown, stopped) = start(|handles| {
            handles.iter().for_each(LoopHandle::exit_for_test);
        });
        let result = stopped
            .recv_timeout(TIMEOUT)
            .expect("run returned once no event loop ran");
        assert!(
            matches!(result, Err(ServerError::NoEventLoop)),
            "{result:?}"
        );
    }

    /// One loop gone: the other serves every new connection.
    #[test]
    fn the_loops_that_still_run_serve_new_connections() {
        let (addr, shutdown, stopped) = start(|handles| {
            handles[0].exit_for_test();
            wait_exited(&handles[0]);
        });
        for _ in 0..4 {
            expect_name(addr);
        }
        shutdown.trigger();
        let result = stopped.recv_timeout(TIMEOUT).expect("run returned");
        assert!(result.is_ok(), "{result:?}");
    }

    /// A burst larger than a batch reaches the loops whole, and the server
    /// stops cleanly after it.
    #[test]
    fn a_burst_larger_than_a_batch_is_served() {
        let (addr, shutdown, stopped) = start(|_| {});
        let clients: Vec<_> = (0..HANDOVER_BATCH * 3 + 1)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for client in clients {
            client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            let mut line = String::new();
            BufReader::new(client)
                .read_line(&mut line)
                .expect("read NAME");
            assert_eq!(line, "NAME\n");
        }
        shutdown.trigger();
        let result = stopped.recv_timeout(TIMEOUT).expect("run returned");
        assert!(result.is_ok(), "{result:?}");
    }
}
