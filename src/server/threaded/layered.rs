//! A connection of a listener with layers (TLS, WebSocket, a user's), as
//! the blocking read and write halves the threaded driver serves.
//!
//! Both halves share the connection's [`Layer`] behind a mutex. The reader
//! reads the socket without holding it, then, holding it, feeds the layer
//! and writes what the layer has to say at once (handshake messages, pongs,
//! close frames, alerts). The writer hands the server's lines to the layer
//! and writes the result. The layer is made on the reader's first read, on
//! the connection's own thread: never on the accept thread.
//!
//! - Lines the server sends before the layer is established (`NAME`, a
//!   refusal) wait in the adapter and go out right after the handshake.
//! - The server's close before the handshake is done ends the connection
//!   at once (nothing could be said), as on the event loops; except a
//!   refusal as full, which waits for the handshake, then goes out after
//!   its line (the refusal waits up to the name deadline: see
//!   [`LayeredReader::await_established`]).
//! - A layer error, a finished layer (a page served, an HTTP error) or the
//!   peer's close (a close frame, `close_notify`) ends the input once what
//!   was decoded before it is read: the session sees an end of input.
//! - A write that times out keeps the bytes the layer made for it (they
//!   cannot be made again: TLS records are numbered) and sends them first
//!   on the next write or `flush`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;

use crate::server::LayerFactory;
use crate::transport::layer::{release_if_empty, CloseReason, Layer, LayerEvent};
use crate::transport::{
    is_timeout, reset_on_close, Connection, ReadHalf, TcpConnection, WriteHalf,
};

use super::{READ_CHUNK, WRITE_TICK};
use crate::server::LINGER;

/// An accepted TCP connection of a listener with layers; its layers are
/// made when it is first read.
pub(crate) struct LayeredConnection {
    stream: TcpStream,
    peer: String,
    make: LayerFactory,
}

impl LayeredConnection {
    /// `connection`, whose layers `make` will build.
    pub(crate) fn new(connection: TcpConnection, make: LayerFactory) -> Self {
        let peer = connection.peer();
        LayeredConnection {
            stream: connection.into_stream(),
            peer,
            make,
        }
    }
}

impl Connection for LayeredConnection {
    type Reader = LayeredReader;
    type Writer = LayeredWriter;

    fn split(self) -> io::Result<(LayeredReader, LayeredWriter)> {
        // The reader may write (a handshake) before the writer thread sets
        // its own timeout.
        self.stream.set_write_timeout(Some(WRITE_TICK))?;
        let reader_socket = self.stream.try_clone()?;
        let shared = Arc::new(Mutex::new(Shared {
            socket: self.stream,
            peer: self.peer,
            stage: Stage::Unmade(self.make),
            wire: BytesMut::new(),
            early: BytesMut::new(),
            established: false,
            closing: None,
            write_closed: false,
            over: false,
        }));
        let reader = LayeredReader {
            socket: reader_socket,
            shared: shared.clone(),
            input: BytesMut::new(),
            plain: BytesMut::new(),
            timeout: None,
            socket_timeout: None,
        };
        Ok((reader, LayeredWriter { shared }))
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }
}

/// Where the connection's layer stands.
enum Stage {
    /// Not made yet: the reader makes it.
    Unmade(LayerFactory),
    Ready(Box<dyn Layer>),
    /// It could not be made; the connection is over.
    Failed,
}

/// What both halves share.
struct Shared {
    /// The socket, for writing (the reader reads its own handle).
    socket: TcpStream,
    /// Who is on the other end, for logs.
    peer: String,
    stage: Stage,
    /// Bytes for the wire, made by the layer, not written yet.
    wire: BytesMut,
    /// Lines sent before the layer was established.
    early: BytesMut,
    established: bool,
    /// The server's refusal as full, asked before the layer was
    /// established.
    closing: Option<CloseReason>,
    /// The server has closed (or aborted): nothing more is written.
    write_closed: bool,
    /// Nothing more will be read: the layer finished or failed, the peer
    /// closed, or the layer could not be made.
    over: bool,
}

impl Shared {
    /// Makes the layer, if not yet made.
    fn make_layer(&mut self) {
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
    fn after_receive(
        &mut self,
        result: Result<(), crate::transport::LayerError>,
    ) -> io::Result<()> {
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
    fn write_wire(&mut self) -> io::Result<()> {
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
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
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
    fn close(&mut self, reason: CloseReason) -> io::Result<()> {
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
    fn abort(&mut self) -> io::Result<()> {
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

/// The reading half: plain bytes out of the layer.
pub(crate) struct LayeredReader {
    socket: TcpStream,
    shared: Arc<Mutex<Shared>>,
    /// Wire bytes the layer left (an unfinished unit).
    input: BytesMut,
    /// Plain bytes not yet read.
    plain: BytesMut,
    /// Bounds each whole read (however many socket reads it takes).
    timeout: Option<Duration>,
    /// The timeout set on the socket now.
    socket_timeout: Option<Duration>,
}

impl LayeredReader {
    /// Reads the socket once (at most until `deadline`) and feeds the
    /// layer. `Ok(false)`: the input is over.
    fn fill(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        {
            let mut shared = self.shared.lock();
            if !shared.over {
                shared.make_layer();
            }
            if shared.over {
                return Ok(false);
            }
        }
        let wait = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Some(left)
            }
            None => None,
        };
        if wait != self.socket_timeout {
            self.socket.set_read_timeout(wait)?;
            self.socket_timeout = wait;
        }
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = self.socket.read(&mut self.input[start..]);
        self.input.truncate(start + *read.as_ref().unwrap_or(&0));
        let mut shared = self.shared.lock();
        match read {
            Ok(0) => {
                shared.over = true;
                release_if_empty(&mut self.input);
                return Ok(false);
            }
            Ok(_) => {}
            Err(error) => {
                release_if_empty(&mut self.input);
                return Err(error);
            }
        }
        let result = match &mut shared.stage {
            Stage::Ready(layer) => layer.receive(&mut self.input, &mut self.plain),
            _ => Ok(()),
        };
        release_if_empty(&mut self.input);
        shared.after_receive(result)?;
        Ok(true)
    }

    /// Reads until the layer is established, the input is over, or
    /// `deadline` passes, discarding plain bytes. Returns whether it is
    /// established: then the lines sent before, and a close asked before,
    /// have gone out.
    pub(crate) fn await_established(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            if self.shared.lock().established {
                return true;
            }
            match self.fill(deadline) {
                Ok(true) => self.plain.clear(),
                Ok(false) => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

impl Read for LayeredReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if !self.plain.is_empty() {
                let n = buf.len().min(self.plain.len());
                buf[..n].copy_from_slice(&self.plain[..n]);
                self.plain.advance(n);
                release_if_empty(&mut self.plain);
                return Ok(n);
            }
            if !self.fill(deadline)? {
                return Ok(0);
            }
        }
    }
}

impl ReadHalf for LayeredReader {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        self.timeout = timeout;
        Ok(())
    }
}

/// The writing half: the server's lines into the layer.
pub(crate) struct LayeredWriter {
    shared: Arc<Mutex<Shared>>,
}

impl Write for LayeredWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.lock().send(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.shared.lock().send(bufs)
    }

    /// Writes the bytes a timed-out write kept back.
    fn flush(&mut self) -> io::Result<()> {
        let mut shared = self.shared.lock();
        if shared.write_closed {
            return Ok(());
        }
        shared.write_wire()
    }
}

impl WriteHalf for LayeredWriter {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.shared.lock().socket.set_write_timeout(timeout)
    }

    /// Reading: the socket's. Writing: as [`WriteHalf::close`] with
    /// [`CloseReason::Normal`] (the layer closes first).
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let mut shared = self.shared.lock();
        if how != Shutdown::Read {
            shared.close(CloseReason::Normal)?;
        }
        if how != Shutdown::Write {
            shared.socket.shutdown(Shutdown::Read)?;
        }
        Ok(())
    }

    fn close(&self, reason: CloseReason) -> io::Result<()> {
        self.shared.lock().close(reason)
    }

    fn abort(&self) -> io::Result<()> {
        self.shared.lock().abort()
    }
}
