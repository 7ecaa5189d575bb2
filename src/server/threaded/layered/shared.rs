//! What both halves of a layered connection share: the layer, the bytes
//! on their way to the wire, and where the connection stands.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use bytes::{Buf, BytesMut};

use crate::server::{LayerFactory, LINGER};
use crate::transport::layer::{release_if_empty, CloseReason, Layer, LayerError, LayerEvent};
use crate::transport::{is_timeout, reset_on_close};

/// Where the connection's layer stands.
pub(super) enum Stage {
    /// Not made yet: the reader makes it.
    Unmade(LayerFactory),
    Ready(Box<dyn Layer>),
    /// It could not be made; the connection is over.
    Failed,
}

/// What both halves share.
pub(super) struct Shared {
    /// The socket, for writing (the reader reads its own handle).
    pub(super) socket: TcpStream,
    /// Who is on the other end, for logs.
    pub(super) peer: String,
    pub(super) stage: Stage,
    /// Bytes for the wire, made by the layer, not written yet.
    pub(super) wire: BytesMut,
    /// Lines sent before the layer was established.
    pub(super) early: BytesMut,
    pub(super) established: bool,
    /// The server's refusal as full, asked before the layer was
    /// established.
    pub(super) closing: Option<CloseReason>,
    /// The server has closed (or aborted): nothing more is written.
    pub(super) write_closed: bool,
    /// Nothing more will be read: the layer finished or failed, the peer
    /// closed, or the layer could not be made.
    pub(super) over: bool,
}

impl Shared {
    /// Makes the layer, if not yet made.
    pub(super) fn make_layer(&mut self) {
        let Stage::Unmade(make) = &self.stage else {
            return;
        };
        self.stage = match make() {
            Ok(layer) => Stage::Ready(layer),
            Err(error) => {
                log::warn!(
                    "dropped {}: its layers could not be made: {error}",
                    self.peer
                );
                self.over = true;
                Stage::Failed
            }
        };
    }

    /// After the layer received input (`result` is what `receive` said):
    /// handles its events, sends the early lines (and a close asked
    /// early) once it is established, and writes what it has to say.
    pub(super) fn after_receive(&mut self, result: Result<(), LayerError>) -> io::Result<()> {
        let Stage::Ready(layer) = &mut self.stage else {
            return Ok(());
        };
        // The handshake's own output first: what `send` gives follows it.
        layer.poll_transmit(&mut self.wire);
        let mut established_now = false;
        while let Some(event) = layer.poll_event() {
            match event {
                LayerEvent::Established => established_now = !self.established,
                LayerEvent::PeerClosed { .. } => self.over = true,
            }
        }
        let mut close_now = false;
        if established_now {
            self.established = true;
            if !self.early.is_empty() {
                layer.send(&self.early, &mut self.wire);
                self.early = BytesMut::new();
            }
            if let Some(reason) = self.closing.take() {
                layer.close(reason);
                close_now = true;
            }
        }
        if let Err(error) = result {
            log::debug!("{}: the layer ended the connection: {error}", self.peer);
            self.over = true;
        }
        if layer.is_finished() {
            self.over = true;
        }
        layer.poll_transmit(&mut self.wire);
        if self.write_closed {
            // Closed or cut already: nothing more goes out.
            self.wire = BytesMut::new();
            return Ok(());
        }
        let written = self.write_wire();
        if close_now {
            self.write_closed = true;
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        match written {
            Err(error) if !is_timeout(&error) => Err(error),
            // A client that does not read gets the rest with the next write.
            _ => Ok(()),
        }
    }

    /// Writes what waits for the wire; a timeout leaves the rest waiting.
    pub(super) fn write_wire(&mut self) -> io::Result<()> {
        while !self.wire.is_empty() {
            match self.socket.write(&self.wire) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wire.advance(n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        release_if_empty(&mut self.wire);
        Ok(())
    }

    /// [`Shared::write_wire`], retrying timeouts until `deadline`.
    fn write_wire_until(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            match self.write_wire() {
                Err(error) if is_timeout(&error) && Instant::now() < deadline => {}
                done => return done,
            }
        }
    }

    /// The server's lines: through the layer once it is established, kept
    /// until then. A timeout before any of `bufs` is taken is an error (the
    /// caller retries); after, the bytes wait for the next write.
    pub(super) fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.write_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let total = bufs.iter().map(|buf| buf.len()).sum();
        match &mut self.stage {
            Stage::Ready(_) if self.established => {}
            // It never will be established: the reader ends the session.
            Stage::Failed => return Ok(total),
            Stage::Ready(_) if self.over => return Ok(total),
            _ => {
                for buf in bufs {
                    self.early.extend_from_slice(buf);
                }
                return Ok(total);
            }
        }
        self.write_wire()?;
        if let Stage::Ready(layer) = &mut self.stage {
            for buf in bufs {
                layer.send(buf, &mut self.wire);
            }
        }
        match self.write_wire() {
            Err(error) if !is_timeout(&error) => Err(error),
            _ => Ok(total),
        }
    }

    /// The server ends the connection, for `reason`, after what it sent:
    /// at once, unless the server is full and the handshake still running
    /// (then once it is established, so that the client can be told).
    pub(super) fn close(&mut self, reason: CloseReason) -> io::Result<()> {
        if self.write_closed {
            return Ok(());
        }
        let handshaking = !matches!(self.stage, Stage::Failed) && !self.established;
        if handshaking && !self.over && reason == CloseReason::Full {
            self.closing = Some(reason);
            return Ok(());
        }
        let abandoned = !self.established;
        if abandoned {
            // Nothing more to read either: the lines never go out.
            self.over = true;
            self.early = BytesMut::new();
        }
        // What is left goes out, then the layer's closing. The caller
        // flushed already; the deadline only bounds what is left.
        let deadline = Instant::now() + LINGER;
        if self.write_wire_until(deadline).is_ok() {
            if let Stage::Ready(layer) = &mut self.stage {
                layer.close(reason);
                layer.poll_transmit(&mut self.wire);
            }
            let _ = self.write_wire_until(deadline);
        }
        self.write_closed = true;
        if abandoned {
            // A reader blocked on the handshake lets go at once.
            let _ = self.socket.shutdown(Shutdown::Read);
        }
        self.socket.shutdown(Shutdown::Write)
    }

    /// Cuts the connection: a close (1008) if it can go out without
    /// waiting, then a reset.
    pub(super) fn abort(&mut self) -> io::Result<()> {
        if let Stage::Ready(layer) = &mut self.stage {
            // Not after half a record or frame: that would garble it.
            if self.established && !self.write_closed && self.wire.is_empty() {
                layer.close(CloseReason::Policy);
                let mut bytes = BytesMut::new();
                layer.poll_transmit(&mut bytes);
                send_without_waiting(&self.socket, &bytes);
            }
        }
        self.write_closed = true;
        self.wire = BytesMut::new();
        self.early = BytesMut::new();
        reset_on_close(&self.socket)?;
        self.socket.shutdown(Shutdown::Read)
    }
}

/// Writes what fits in the socket's buffer now, if anything.
fn send_without_waiting(socket: &TcpStream, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    #[cfg(unix)]
    {
        let _ = socket2::SockRef::from(socket).send_with_flags(bytes, libc::MSG_DONTWAIT);
    }
    #[cfg(not(unix))]
    let _ = socket;
}
