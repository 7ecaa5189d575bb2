//! One connection of an event loop: its socket, its session and outbox,
//! and, for TLS, WebSocket or a stack of the user's, its layers.
//!
//! The loop owns readiness, timers and the connection table; this module
//! owns what happens to one connection's bytes: what it read goes through
//! its layers into its session, what its outbox has goes through its
//! layers into its socket, and it tells the loop when to end its output or
//! close it.
//!
//! A plain TCP connection writes straight from the room log's shared
//! chunks (vectored writes). A layered one encodes a batch of its outbox
//! into its own buffer (one batch at most, so a connection that does not
//! read holds one batch, not its whole backlog, and the room log keeps
//! plain lines), and takes the next batch only once that buffer is written.
//! Until its layers' handshake is done, its outbox keeps what the session
//! says (`NAME`); a connection the server refuses as full waits for the
//! handshake (within the name timeout) so that the client can be told.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream as MioStream;

use crate::outbox::{Outbox, OutboxState, WriteBatch};
use crate::server::close::close_reason;
use crate::server::connections::Slot;
use crate::session::{Session, SessionState};
use crate::transport::layer::{release_if_empty, CloseReason, Layer, LayerEvent};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reading and writing.
    Open,
    /// Our side is shut (FIN sent); waiting for the client's end of input.
    Lingering,
}

/// What the loop does with a connection after writing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Nothing: it waits for its outbox or its socket.
    Wait,
    /// Everything is written: shut our side and linger.
    EndOutput,
    /// Close it now.
    Close,
}

/// The loop's buffers, lent to the connection it works on.
pub(super) struct Scratch {
    /// Where a read is framed when its connection had no unfinished line.
    pub(super) input: BytesMut,
    /// What a connection's layers decoded from one read.
    pub(super) plain: BytesMut,
    /// What the connection being written is to write next (refers to the
    /// room log's chunks; emptied after each write).
    pub(super) batch: WriteBatch,
    /// A batch's parts joined, for layers that pay per call (a TLS record
    /// each).
    joined: Vec<u8>,
    /// The encoded bytes of the layered connection being written, lent to
    /// it while it writes: a connection keeps a buffer of its own only for
    /// what the socket did not take, so a write costs no allocation.
    wire: BytesMut,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Scratch {
            input: BytesMut::new(),
            plain: BytesMut::new(),
            batch: WriteBatch::new(),
            joined: Vec::new(),
            wire: BytesMut::new(),
        }
    }
}

pub(super) struct Conn {
    pub(super) stream: MioStream,
    pub(super) generation: u64,
    /// `None` for a connection refused at the limit: it only gets its line.
    pub(super) session: Option<Session>,
    pub(super) outbox: Arc<Outbox>,
    _slot: Option<Slot>,
    /// An unfinished line, kept between reads (empty, unallocated, if none).
    input: BytesMut,
    /// The client's input has ended.
    pub(super) input_ended: bool,
    pub(super) writable: bool,
    pub(super) phase: Phase,
    /// When the outbox was last written on a wake-up.
    pub(super) flushed_at: Instant,
    /// Waiting in the loop's deferred list for the next flush tick.
    pub(super) deferred: bool,
    /// Its layers, if it is not plain lines over TCP (boxed: plain
    /// connections pay one pointer).
    layered: Option<Box<Layered>>,
}

/// A connection's layers and their buffers.
struct Layered {
    layer: Box<dyn Layer>,
    /// Wire bytes the layer left for later (half a record or frame header).
    raw: BytesMut,
    /// Encoded bytes not yet written: at most one batch's worth, plus the
    /// layer's own output.
    wire: BytesMut,
    established: bool,
    /// [`Layer::close`] was called.
    closed: bool,
    /// The name timeout passed before the handshake was done.
    handshake_expired: bool,
    /// Nothing more is read through the layer: it failed or finished, or
    /// the peer closed in its terms.
    input_over: bool,
}

impl Layered {
    fn close(&mut self, reason: CloseReason) {
        self.layer.close(reason);
        self.closed = true;
        self.layer.poll_transmit(&mut self.wire);
    }
}

impl Conn {
    pub(super) fn new(
        stream: MioStream,
        generation: u64,
        session: Option<Session>,
        outbox: Arc<Outbox>,
        slot: Option<Slot>,
        layer: Option<Box<dyn Layer>>,
        now: Instant,
    ) -> Self {
        Conn {
            stream,
            generation,
            session,
            outbox,
            _slot: slot,
            input: BytesMut::new(),
            input_ended: false,
            writable: true,
            phase: Phase::Open,
            flushed_at: now,
            deferred: false,
            layered: layer.map(|layer| {
                Box::new(Layered {
                    layer,
                    raw: BytesMut::new(),
                    wire: BytesMut::new(),
                    established: false,
                    closed: false,
                    handshake_expired: false,
                    input_over: false,
                })
            }),
        }
    }

    /// Whether it needs a deadline from the TCP accept: a session to name,
    /// or a handshake to finish.
    pub(super) fn has_deadline(&self) -> bool {
        self.session.is_some() || self.layered.is_some()
    }

    /// Bytes read from its socket: through its layers, if any, into its
    /// session.
    pub(super) fn received(&mut self, bytes: &[u8], scratch: &mut Scratch) {
        if self.phase != Phase::Open {
            return;
        }
        let Conn {
            session,
            input,
            layered,
            ..
        } = self;
        let Some(layered) = layered.as_deref_mut() else {
            scratch.input.clear();
            scratch.input.extend_from_slice(bytes);
            feed(session, input, &mut scratch.input);
            return;
        };
        if layered.input_over {
            return;
        }
        layered.raw.extend_from_slice(bytes);
        scratch.plain.clear();
        let result = layered.layer.receive(&mut layered.raw, &mut scratch.plain);
        release_if_empty(&mut layered.raw);
        if !scratch.plain.is_empty() {
            feed(session, input, &mut scratch.plain);
        }
        let mut over = layered.layer.is_finished();
        while let Some(event) = layered.layer.poll_event() {
            match event {
                LayerEvent::Established => layered.established = true,
                LayerEvent::PeerClosed { .. } => over = true,
            }
        }
        if let Err(error) = result {
            log::debug!("a connection's layers ended it: {error}");
            over = true;
        }
        if over {
            layered.input_over = true;
            layered.raw = BytesMut::new();
            if let Some(session) = session {
                session.input_ended();
            }
        }
    }

    /// The client's input ended (a TCP end of input, or a failed read).
    pub(super) fn end_input(&mut self) {
        self.input_ended = true;
        if let Some(session) = &mut self.session {
            session.input_ended();
        }
    }

    /// The name timeout (counted from the TCP accept) passed.
    pub(super) fn name_timed_out(&mut self) {
        if let Some(layered) = &mut self.layered {
            if !layered.established {
                layered.handshake_expired = true;
            }
        }
        if let Some(session) = &mut self.session {
            if matches!(
                session.state(),
                SessionState::Handshake | SessionState::Joining
            ) {
                session.name_timed_out();
            }
        }
    }

    /// Whether its session waits for the room's answer to its name: nothing
    /// is read meanwhile (see [`Session::resume`]).
    pub(super) fn is_waiting(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_waiting)
    }

    /// If its session was waiting and the room has answered: hands the
    /// session the input it held. Returns whether it did (the loop then
    /// reads again).
    pub(super) fn resume(&mut self) -> bool {
        let Some(session) = &mut self.session else {
            return false;
        };
        if !session.resume(&mut self.input) {
            return false;
        }
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        true
    }

    /// Writes what is due, as far as the socket takes it.
    pub(super) fn write_out(&mut self, scratch: &mut Scratch) -> Next {
        if self.layered.is_some() {
            self.write_layered(scratch)
        } else {
            self.write_plain(&mut scratch.batch)
        }
    }

    /// Vectored writes straight from the room log's shared chunks.
    fn write_plain(&mut self, batch: &mut WriteBatch) -> Next {
        loop {
            if !self.writable {
                // The socket's writable event brings us back; meanwhile
                // only a change of state matters.
                return match self.outbox.status() {
                    (_, OutboxState::Aborted) => Next::Close,
                    (0, OutboxState::Closing) => Next::EndOutput,
                    _ => Next::Wait,
                };
            }
            let state = self.outbox.fill(batch);
            if state == OutboxState::Aborted {
                batch.clear();
                return Next::Close;
            }
            if batch.is_empty() {
                return match state {
                    OutboxState::Closing => Next::EndOutput,
                    _ => Next::Wait,
                };
            }
            let written = batch.write_to(&mut self.stream);
            let n = *written.as_ref().unwrap_or(&0);
            self.outbox.consume(batch, n);
            if let Some(next) = self.after_write(written) {
                return next;
            }
        }
    }

    /// What a write's result means: `None` to go on writing.
    fn after_write(&mut self, written: io::Result<usize>) -> Option<Next> {
        match written {
            Ok(0) => {
                log::debug!("write failed: wrote nothing");
                self.outbox.abort();
                Some(Next::Close)
            }
            Ok(_) => None,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Some(Next::Wait)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => None,
            Err(error) => {
                log::debug!("write failed: {error}");
                self.outbox.abort();
                Some(Next::Close)
            }
        }
    }

    /// Through the layers: the layer's own output first, then one batch of
    /// the outbox at a time, each encoded once its predecessor is written.
    fn write_layered(&mut self, scratch: &mut Scratch) -> Next {
        let Scratch {
            batch,
            joined,
            wire,
            ..
        } = scratch;
        if let Some(layered) = self.layered.as_deref_mut() {
            if layered.wire.is_empty() {
                std::mem::swap(&mut layered.wire, wire);
            }
        }
        let next = self.encode_and_write(batch, joined);
        if let Some(layered) = self.layered.as_deref_mut() {
            if layered.wire.is_empty() {
                // All written: the buffer goes back to the loop, and the
                // idle connection holds none.
                *wire = std::mem::take(&mut layered.wire);
            }
        }
        next
    }

    /// [`Conn::write_layered`]'s work, in the connection's `wire` buffer.
    fn encode_and_write(&mut self, batch: &mut WriteBatch, joined: &mut Vec<u8>) -> Next {
        loop {
            let Some(layered) = self.layered.as_deref_mut() else {
                return Next::Wait;
            };
            if self.outbox.state() == OutboxState::Aborted {
                // A cut slow consumer: its close frame, if nothing is half
                // written and the socket takes it at once, then the reset.
                if !layered.closed && layered.wire.is_empty() {
                    layered.close(CloseReason::Policy);
                    let _ = self.stream.write(&layered.wire);
                }
                layered.wire.clear();
                return Next::Close;
            }
            if !layered.wire.is_empty() {
                if !self.writable {
                    return Next::Wait;
                }
                let written = self.stream.write(&layered.wire);
                if let Ok(n) = written {
                    layered.wire.advance(n);
                }
                match self.after_write(written) {
                    Some(next) => return next,
                    None => continue,
                }
            }
            if layered.layer.wants_write() {
                layered.layer.poll_transmit(&mut layered.wire);
                if !layered.wire.is_empty() {
                    continue;
                }
            }
            if layered.closed || layered.layer.is_finished() {
                return Next::EndOutput;
            }
            if layered.established {
                let state = self.outbox.fill(batch);
                if !batch.is_empty() {
                    if let [part] = batch.parts() {
                        layered.layer.send(part, &mut layered.wire);
                    } else {
                        // One call for the batch: one TLS record, not one
                        // per part.
                        joined.clear();
                        batch.copy_to(joined);
                        layered.layer.send(joined, &mut layered.wire);
                    }
                    let n = batch.len();
                    self.outbox.consume(batch, n);
                    continue;
                }
                match state {
                    OutboxState::Open => return Next::Wait,
                    OutboxState::Closing => layered.close(close_reason(&self.outbox)),
                    // Aborted: dealt with at the top of the loop.
                    _ => {}
                }
                continue;
            }
            // The handshake is not done: lines wait for it, unless the
            // connection ends and need not (or can no longer) wait.
            if self.outbox.state() == OutboxState::Closing {
                let reason = close_reason(&self.outbox);
                if reason != CloseReason::Full || layered.handshake_expired {
                    layered.close(reason);
                    continue;
                }
            }
            return Next::Wait;
        }
    }
}

/// Feeds freshly read plain bytes (in `fresh`, a scratch buffer) to the
/// session, keeping only an unfinished line in the connection (`kept`).
fn feed(session: &mut Option<Session>, kept: &mut BytesMut, fresh: &mut BytesMut) {
    let Some(session) = session else {
        return;
    };
    if session.is_closed() {
        return;
    }
    if kept.is_empty() {
        session.receive(fresh);
        if !fresh.is_empty() {
            *kept = BytesMut::from(&fresh[..]);
        }
    } else {
        kept.extend_from_slice(fresh);
        session.receive(kept);
        if kept.is_empty() {
            *kept = BytesMut::new();
        }
    }
}
