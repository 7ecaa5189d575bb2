//! The event-loop driver: non-blocking std TCP sockets, readiness from epoll
//! (through `mio`), a few loops (one per core) each driving many
//! connections with the same [`Session`]s as the threaded driver.
//!
//! An idle connection costs its session, its outbox and a socket: no thread,
//! no stack, no read buffer (bytes are read into the loop's scratch buffer,
//! and only an unfinished line is kept per connection).
//!
//! Outboxes wake their loop through [`Wake`]: the connection's token goes on
//! the loop's ready list and, at most once per turn of the loop, its
//! `mio::Waker` is signalled. A connection with a little to say may be
//! written with the next flush tick rather than at once; its outbox wakes the
//! loop again when its pending bytes reach [`Outbox::urgent_bytes`], and the
//! loop then writes it at once, tick or not. So a deferred outbox holds at
//! most that many bytes plus what one turn of the loop pushes into it: a
//! member is cut for its own slowness, never for the loop's batching.
//!
//! A connection of a listener with layers (TLS, WebSocket, a stack of the
//! user's) runs them here too, sans-I/O, on the loop that serves it: its
//! handshake never runs on the accept thread, and costs no thread at all
//! (see [`conn`]).

mod conn;
mod handle;
mod timers;

use std::io::{self, Read};
use std::net::Shutdown as Direction;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::outbox::{Outbox, OutboxState};
use crate::protocol::Reply;
use crate::room::Room;
use crate::session::Session;
use crate::transport::reset_on_close;

use super::config::ServerConfig;
use super::connections::{Connections, Refusal};
use super::LINGER;
use conn::{Conn, Next, Phase, Scratch};
use handle::{ConnWaker, Shared, WAKE};
use timers::Timers;

pub(crate) use handle::{Accepted, LoopHandle};

/// The loop's read buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Reads from one connection per turn, so that a flood cannot starve the
/// others; a connection with more to read is revisited next turn.
const MAX_READS_PER_TURN: usize = 4;
/// Events taken from epoll per turn.
const EVENTS_PER_TURN: usize = 1024;
/// A connection's outbox is written at most once per flush interval when it
/// only has a little to say: lines that arrive meanwhile go out in the same
/// write. Writes are what a busy chat server spends most of its time on
/// (the kernel's TCP path, per call, about 5 µs on loopback), so the
/// interval grows with the connections a loop holds: 10 µs each keeps
/// writing every one of them once per interval to about half the loop's
/// time. It never drops below [`FLUSH_INTERVAL_MIN`] (what a small room
/// waits at most) nor grows past [`FLUSH_INTERVAL_MAX`] (what a huge one
/// does).
const FLUSH_COST_PER_CONNECTION: Duration = Duration::from_micros(10);
/// The shortest flush interval.
const FLUSH_INTERVAL_MIN: Duration = Duration::from_millis(5);
/// The longest flush interval.
const FLUSH_INTERVAL_MAX: Duration = Duration::from_millis(50);
/// Up to this many connections woken in one turn are written at once,
/// interval or not: coalescing pays only when there are many writes to do,
/// and a lone request and its answer should not wait.
const IMMEDIATE_WAKES: usize = 16;

struct EventLoop {
    poll: Poll,
    shared: Arc<Shared>,
    room: Room,
    config: ServerConfig,
    connections: Arc<Connections>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_generation: u64,
    /// Name timeouts (from the TCP accept), and lingers.
    name_deadlines: Timers,
    linger_deadlines: Timers,
    /// Connections that still had input when their turn ended.
    read_again: Vec<usize>,
    /// Connections woken within the flush interval of their last flush, and
    /// when they are all flushed.
    deferred: Vec<usize>,
    deferred_due: Option<Instant>,
    /// The loop's read buffer.
    read_buf: Vec<u8>,
    /// Buffers lent to the connection being served.
    scratch: Scratch,
}

impl EventLoop {
    fn new(
        poll: Poll,
        shared: Arc<Shared>,
        room: Room,
        config: ServerConfig,
        connections: Arc<Connections>,
    ) -> Self {
        EventLoop {
            poll,
            shared,
            room,
            config,
            connections,
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            name_deadlines: Timers::default(),
            linger_deadlines: Timers::default(),
            read_again: Vec::new(),
            deferred: Vec::new(),
            deferred_due: None,
            read_buf: vec![0; READ_CHUNK],
            scratch: Scratch::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        let mut ready = Vec::new();
        let mut turn = Vec::new();
        while !self.shared.stop.load(Ordering::SeqCst) {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("event loop failed: {error}");
                break;
            }
            self.shared.notified.store(false, Ordering::Release);
            turn.clear();
            turn.extend(events.iter().filter(|e| e.token() != WAKE).map(|e| {
                let readable = e.is_readable() || e.is_read_closed() || e.is_error();
                (e.token().0, readable, e.is_writable())
            }));
            for &(token, readable, writable) in &turn {
                if writable {
                    if let Some(conn) = self.conn_mut(token) {
                        conn.writable = true;
                    }
                    self.flush(token);
                }
                if readable {
                    self.read(token);
                }
            }
            for token in std::mem::take(&mut self.read_again) {
                self.read(token);
            }
            self.register_incoming();
            std::mem::swap(&mut ready, &mut *self.shared.ready.lock());
            let now = Instant::now();
            let interval = if ready.len() > IMMEDIATE_WAKES {
                self.flush_interval()
            } else {
                Duration::ZERO
            };
            for token in ready.drain(..) {
                self.wake_flush(token, now, interval);
            }
            if self.deferred_due.is_some_and(|due| due <= now) {
                self.flush_deferred(now);
            }
            self.expire_deadlines();
        }
        self.close_all();
    }

    /// On the way out, for whatever reason: no connection is left behind,
    /// and a member still in the room leaves it.
    fn close_all(&mut self) {
        self.shared.exited.store(true, Ordering::SeqCst);
        for token in 0..self.conns.len() {
            self.close(token);
        }
        self.shared.incoming.lock().clear();
        if let Some(on_exit) = &self.shared.on_exit {
            if let Err(error) = on_exit.wake() {
                log::error!("cannot tell the accept thread that an event loop exited: {error}");
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [self.name_deadlines.next(), self.linger_deadlines.next()]
            .into_iter()
            .flatten()
            .chain(self.deferred_due)
            .min()?;
        // Round up, so that the deadline has passed when poll returns.
        Some(next.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    /// How long a quiet connection waits between writes, for this loop's
    /// number of connections.
    fn flush_interval(&self) -> Duration {
        let live = self.conns.len() - self.free.len();
        FLUSH_COST_PER_CONNECTION
            .saturating_mul(u32::try_from(live).unwrap_or(u32::MAX))
            .clamp(FLUSH_INTERVAL_MIN, FLUSH_INTERVAL_MAX)
    }

    fn conn_mut(&mut self, token: usize) -> Option<&mut Conn> {
        self.conns.get_mut(token).and_then(Option::as_mut)
    }

    /// Registers the connections the accept thread handed over (one lock
    /// for all that came since the last turn).
    fn register_incoming(&mut self) {
        let incoming = std::mem::take(&mut *self.shared.incoming.lock());
        for accepted in incoming {
            if let Err(error) = self.register(accepted) {
                log::warn!("dropped a new connection: {error}");
            }
        }
    }

    fn register(&mut self, accepted: Accepted) -> io::Result<()> {
        let Accepted { mut stream, layers } = accepted;
        // Made here, on the loop: a handshake costs the accept thread
        // nothing.
        let layer = match layers.map(|make| make()).transpose() {
            Ok(layer) => layer,
            Err(error) => return Err(io::Error::other(error)),
        };
        let token = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let waker = Arc::new(ConnWaker {
            shared: self.shared.clone(),
            token,
        });
        let outbox = Arc::new(Outbox::with_waker(self.config.queue_bytes, waker));
        let (session, slot) = match self.connections.register(outbox.clone()) {
            Ok(slot) => {
                let session = Session::new(self.room.clone(), outbox.clone(), self.config.max_line);
                (Some(session), Some(slot))
            }
            Err(refusal) => {
                let reply = match refusal {
                    Refusal::Full => {
                        log::warn!("refused a connection: the server is full");
                        Reply::ServerFull
                    }
                    Refusal::Closed => Reply::ShuttingDown,
                };
                outbox.close_with(&reply.encode());
                (None, None)
            }
        };
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(token);
            return Err(error);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let now = Instant::now();
        let conn = Conn::new(
            stream,
            generation,
            session,
            outbox,
            slot,
            layer,
            now - FLUSH_INTERVAL_MAX,
        );
        // The name timeout runs from the TCP accept, and bounds a handshake
        // too. One too large to add to now means "never": no deadline.
        if let (Some(deadline), true) = (
            now.checked_add(self.config.name_timeout),
            conn.has_deadline(),
        ) {
            self.name_deadlines.push(deadline, token, generation);
        }
        self.conns[token] = Some(conn);
        self.flush(token);
        Ok(())
    }

    /// Reads what the connection has (a bounded amount) and feeds its
    /// session, through its layers if it has any.
    fn read(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return;
        };
        let mut more = false;
        for round in 0..MAX_READS_PER_TURN {
            // A session waiting for the room's answer holds its input: read
            // no more until it resumes (see `flush`).
            if conn.input_ended || conn.is_waiting() {
                break;
            }
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => conn.end_input(),
                Ok(n) => {
                    conn.received(&self.read_buf[..n], &mut self.scratch);
                    more = round + 1 == MAX_READS_PER_TURN;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("read failed: {error}");
                    conn.end_input();
                    conn.outbox.abort();
                }
            }
        }
        if more {
            self.read_again.push(token);
        }
        if conn.input_ended && conn.phase == Phase::Lingering {
            self.close(token);
        } else {
            self.flush(token);
        }
    }

    /// A connection's outbox has something new: write it now, or with the
    /// next flush tick if the connection was written to very recently and
    /// has little to say. An urgent outbox (closed, aborted, or holding
    /// [`Outbox::urgent_bytes`]) is written now even if it was deferred.
    fn wake_flush(&mut self, token: usize, now: Instant, interval: Duration) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return;
        };
        let (pending, state) = conn.outbox.status();
        let urgent = state != OutboxState::Open
            || pending >= conn.outbox.urgent_bytes()
            || conn.is_waiting();
        if urgent || (!conn.deferred && now >= conn.flushed_at + interval) {
            // Its token may stay in the deferred list: the tick skips it.
            conn.deferred = false;
            conn.flushed_at = now;
            self.flush(token);
        } else if !conn.deferred {
            conn.deferred = true;
            self.deferred.push(token);
            self.deferred_due.get_or_insert(now + interval);
        }
    }

    /// The flush tick: writes every connection still deferred.
    fn flush_deferred(&mut self, now: Instant) {
        self.deferred_due = None;
        for token in std::mem::take(&mut self.deferred) {
            if let Some(conn) = self.conn_mut(token) {
                if !conn.deferred {
                    continue;
                }
                conn.deferred = false;
                conn.flushed_at = now;
                self.flush(token);
            }
        }
    }

    /// Writes what the connection's outbox has due, as far as the socket
    /// takes it (see [`Conn::write_out`]); ends its output or closes it
    /// when it says so.
    fn flush(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        if conn.resume() {
            // The room answered its name: it reads again.
            self.read_again.push(token);
        }
        match conn.write_out(&mut self.scratch) {
            Next::Wait => {}
            Next::EndOutput => self.end_output(token),
            Next::Close => self.close(token),
        }
    }

    /// Everything is written: shut our side, then wait for the client's.
    fn end_output(&mut self, token: usize) {
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        let _ = conn.stream.shutdown(Direction::Write);
        if conn.input_ended {
            self.close(token);
            return;
        }
        conn.phase = Phase::Lingering;
        let generation = conn.generation;
        self.linger_deadlines
            .push(Instant::now() + LINGER, token, generation);
        // The client may have closed already, with no event to come.
        self.read(token);
    }

    /// Drops the connection; a member still in the room leaves it.
    fn close(&mut self, token: usize) {
        let Some(mut conn) = self.conns.get_mut(token).and_then(Option::take) else {
            return;
        };
        if conn.outbox.state() == OutboxState::Aborted {
            // Cut, or its connection failed: what it was not sent goes, in
            // the kernel too (a client that does not read would otherwise
            // have the kernel keep it long after the socket is closed).
            if let Err(error) = reset_on_close(&conn.stream) {
                log::debug!("cannot reset a connection on close: {error}");
            }
        }
        if let Some(session) = &mut conn.session {
            if !session.is_closed() {
                session.input_ended();
            }
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.free.push(token);
    }

    fn expire_deadlines(&mut self) {
        let now = Instant::now();
        while let Some((token, generation)) = self.name_deadlines.pop_due(now) {
            if let Some(conn) = self.conn_mut(token) {
                if conn.generation == generation {
                    conn.name_timed_out();
                    self.flush(token);
                }
            }
        }
        while let Some((token, generation)) = self.linger_deadlines.pop_due(now) {
            if self
                .conn_mut(token)
                .is_some_and(|conn| conn.generation == generation)
            {
                self.close(token);
            }
        }
    }
}
