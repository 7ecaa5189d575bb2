//! The thread-per-connection driver: a reader thread runs the session, a
//! writer thread empties the outbox into the connection.
//!
//! Closing is careful not to lose what was sent: the writer writes all that
//! is queued, ends its direction ([`WriteHalf::close`], with the reason the
//! outbox tells), and only then is the connection dropped, once the reader
//! has seen the client's end of input or a short linger has passed.
//!
//! Connections of a listener with layers (TLS, WebSocket) run the same
//! loops over [`layered`]'s adapter, which runs the layers on the
//! connection's own threads.

mod layered;
mod refuse;

use std::io::{self, Write};
use std::net::Shutdown as Direction;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

use crate::outbox::{Outbox, OutboxState, WriteBatch, DEFAULT_BATCH_PARTS};
use crate::protocol::Reply;
use crate::room::Room;
use crate::session::{Session, SessionState};
use crate::transport::layer::CloseReason;
use crate::transport::{is_timeout, Connection, ReadHalf, TcpConnection, WriteHalf};

use super::close::close_reason;
use super::config::ServerConfig;
use super::connections::{Connections, Refusal};
use super::{LayerFactory, LINGER};
use layered::LayeredConnection;
use refuse::{refuse, refuse_layered};

/// Stack size of connection threads: sessions need little.
const STACK_SIZE: usize = 128 * 1024;
/// Bytes asked of each read.
const READ_CHUNK: usize = 8 * 1024;
/// The most bytes one write takes: a writer blocked on a client that does
/// not read holds on to what it was writing (the room log's chunks).
const WRITE_BATCH: usize = 64 * 1024;
/// How often a reader waiting for the room's answer to its name looks at
/// its deadline.
const ANSWER_TICK: Duration = Duration::from_millis(100);
/// How often a blocked write looks whether its outbox was aborted.
const WRITE_TICK: Duration = Duration::from_millis(250);
/// How a connection is told it was refused: the line, why it closes, and
/// when the name timeout (counted from the TCP accept) ends.
type Refuse<C> = fn(C, Bytes, CloseReason, Option<Instant>);

/// Starts serving one accepted connection on two threads.
pub(crate) fn serve<C: Connection>(
    connection: C,
    room: &Room,
    config: &ServerConfig,
    connections: &Arc<Connections>,
) {
    serve_with(connection, room, config, connections, refuse);
}

/// Starts serving a connection accepted by a listener whose connections
/// run the layers `layers` makes (`None`: plain lines), on two threads; the
/// layers are made and run on those threads.
pub(crate) fn serve_listener(
    connection: TcpConnection,
    layers: Option<LayerFactory>,
    room: &Room,
    config: &ServerConfig,
    connections: &Arc<Connections>,
) {
    match layers {
        None => serve(connection, room, config, connections),
        Some(make) => {
            let connection = LayeredConnection::new(connection, make);
            serve_with(connection, room, config, connections, refuse_layered);
        }
    }
}

fn serve_with<C: Connection>(
    connection: C,
    room: &Room,
    config: &ServerConfig,
    connections: &Arc<Connections>,
    refuse: Refuse<C>,
) {
    let peer = connection.peer();
    // A timeout too large to add to now means "never".
    let name_deadline = Instant::now().checked_add(config.name_timeout);
    let outbox = Arc::new(Outbox::new(config.queue_bytes));
    let slot = match connections.register(outbox.clone()) {
        Ok(slot) => slot,
        Err(Refusal::Full) => {
            log::warn!("refused {peer}: the server is full");
            let line = Reply::ServerFull.encode();
            refuse(connection, line, CloseReason::Full, name_deadline);
            return;
        }
        Err(Refusal::Closed) => {
            let line = Reply::ShuttingDown.encode();
            refuse(connection, line, CloseReason::Shutdown, name_deadline);
            return;
        }
    };
    let (reader, writer) = match connection.split() {
        Ok(halves) => halves,
        Err(error) => {
            log::warn!("dropped {peer}: {error}");
            return;
        }
    };
    log::debug!("accepted {peer}");
    let session = Session::new(room.clone(), outbox.clone(), config.max_line);
    let slot = Arc::new(slot);
    let reader_done = Arc::new(Done::default());

    let writer_slot = slot.clone();
    let writer_done = reader_done.clone();
    let writer_outbox = outbox.clone();
    let spawned = spawn("chat-writer", move || {
        write_loop(writer, &writer_outbox, &writer_done);
        drop(writer_slot);
    });
    if let Err(error) = spawned {
        log::warn!("dropped {peer}: no writer thread: {error}");
        return;
    }
    let guard = DoneGuard(reader_done);
    let spawned = spawn("chat-reader", move || {
        read_loop(reader, session, name_deadline);
        drop(guard);
        drop(slot);
    });
    if let Err(error) = spawned {
        log::warn!("dropped {peer}: no reader thread: {error}");
        outbox.abort();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(STACK_SIZE)
        .spawn(f)
        .map(drop)
}

/// Reads and feeds the session until it closes or the input ends.
fn read_loop<R: ReadHalf>(mut reader: R, mut session: Session, name_deadline: Option<Instant>) {
    let mut chunk = vec![0; READ_CHUNK];
    let mut buf = BytesMut::new();
    let mut timeout = None;
    while !session.is_closed() {
        let wanted = match (session.state(), name_deadline) {
            (SessionState::Handshake | SessionState::Joining, Some(name_deadline)) => {
                let left = name_deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    session.name_timed_out();
                    continue;
                }
                Some(left)
            }
            _ => None,
        };
        if session.is_waiting() {
            // Nothing is read until the room answers the name (see
            // `Session::resume`): `buf` holds one read at most.
            session.wait_answer(wanted.map_or(ANSWER_TICK, |left| left.min(ANSWER_TICK)));
            session.resume(&mut buf);
            continue;
        }
        if wanted != timeout {
            if let Err(error) = reader.set_read_timeout(wanted) {
                log::debug!("read timeout not set: {error}");
            }
            timeout = wanted;
        }
        match reader.read(&mut chunk) {
            Ok(0) => {
                session.input_ended();
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                session.receive(&mut buf);
            }
            Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                log::debug!("read failed: {error}");
                session.input_ended();
                return;
            }
        }
    }
    linger(&mut reader, &mut chunk);
}

/// Reads and discards until the client closes its side, for at most
/// [`LINGER`], so that closing does not reset the connection before the
/// client has read our last lines.
fn linger<R: ReadHalf>(reader: &mut R, chunk: &mut [u8]) {
    let deadline = Instant::now() + LINGER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || reader.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match reader.read(chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Writes what the outbox has due until it is closed and empty, or
/// aborted: vectored writes straight from the room log's shared chunks, at
/// most [`WRITE_BATCH`] bytes at a time.
fn write_loop<W: WriteHalf>(mut writer: W, outbox: &Outbox, reader_done: &Done) {
    if let Err(error) = writer.set_write_timeout(Some(WRITE_TICK)) {
        log::debug!("write timeout not set: {error}");
    }
    let mut batch = WriteBatch::with_limits(DEFAULT_BATCH_PARTS, WRITE_BATCH);
    let graceful = loop {
        let state = outbox.wait_fill(&mut batch, None);
        if state == OutboxState::Aborted {
            break false;
        }
        if !batch.is_empty() {
            if let Err(error) = write_batch(&mut writer, &mut batch, outbox) {
                log::debug!("write failed: {error}");
                outbox.abort();
                break false;
            }
            continue;
        }
        if state == OutboxState::Closing {
            break flush(&mut writer, outbox);
        }
    };
    if graceful {
        let _ = writer.close(close_reason(outbox));
    } else {
        // Cut, or its connection failed: what it was not sent goes.
        let _ = writer.abort();
    }
    if !reader_done.wait(LINGER) {
        // The reader is blocked on a client that neither sends nor closes.
        let _ = writer.shutdown(Direction::Read);
    }
}

/// Writes (some of) a batch filled from `outbox` and records what went out.
/// A write that times out is retried unless the outbox has been aborted
/// meanwhile.
fn write_batch<W: Write>(
    writer: &mut W,
    batch: &mut WriteBatch,
    outbox: &Outbox,
) -> io::Result<()> {
    loop {
        match batch.write_to(writer) {
            Ok(0) => {
                outbox.consume(batch, 0);
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => {
                outbox.consume(batch, n);
                return Ok(());
            }
            Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {
                if outbox.state() == OutboxState::Aborted {
                    outbox.consume(batch, 0);
                    return Err(error);
                }
            }
            Err(error) => {
                outbox.consume(batch, 0);
                return Err(error);
            }
        }
    }
}

/// Flushes what the writer kept back (see [`WriteHalf::close`]), retrying
/// timeouts unless the outbox is aborted. Returns whether it all went out.
fn flush<W: WriteHalf>(writer: &mut W, outbox: &Outbox) -> bool {
    loop {
        match writer.flush() {
            Ok(()) => return true,
            Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {
                if outbox.state() == OutboxState::Aborted {
                    return false;
                }
            }
            Err(error) => {
                log::debug!("flush failed: {error}");
                outbox.abort();
                return false;
            }
        }
    }
}

/// A flag one thread sets when it is done and another waits for.
#[derive(Default)]
struct Done {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Done {
    /// Waits until done, at most `timeout`. Returns whether done.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut done = self.done.lock();
        while !*done {
            if self.changed.wait_until(&mut done, deadline).timed_out() {
                return *done;
            }
        }
        true
    }
}

/// Sets its [`Done`] when dropped, however the reader thread ends (or if it
/// never started).
struct DoneGuard(Arc<Done>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        *self.0.done.lock() = true;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::ChatRoom;

    /// A writer that takes at most `step` bytes a call.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_batch_survives_partial_writes() {
        for step in [1, 3, 7, 1000] {
            let room = ChatRoom::new();
            let outbox = Arc::new(Outbox::new(1 << 20));
            let id = room.join("ana", outbox.clone()).expect("join");
            let mut expected = b"Welcome to the chat, ana!\nana has joined the chat.\n".to_vec();
            for i in 0..200 {
                room.broadcast(id, &format!("line {i}")).expect("broadcast");
                expected.extend_from_slice(format!("ana: line {i}\n").as_bytes());
                if i % 50 == 0 {
                    room.whisper(id, "ana", "note").expect("whisper");
                    expected.extend_from_slice(b"priv(ana): note\n");
                }
            }
            let mut w = Trickle {
                out: Vec::new(),
                step,
            };
            let mut batch = WriteBatch::with_limits(4, 100);
            while outbox.fill(&mut batch) == OutboxState::Open && !batch.is_empty() {
                write_batch(&mut w, &mut batch, &outbox).expect("write");
            }
            assert_eq!(w.out, expected, "step {step}");
        }
    }
}
