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

mod shared;

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;

use crate::server::LayerFactory;
use crate::transport::layer::{release_if_empty, CloseReason, Layer};
use crate::transport::{Connection, ReadHalf, TcpConnection, WriteHalf};

use super::{READ_CHUNK, WRITE_TICK};
use shared::{Shared, Stage};

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
