//! How connections come and go, and how their bytes move.
//!
//! There are two ways to plug a transport in:
//!
//! - **Byte layers over TCP, on the event loops** (the fast path, and the
//!   default): a [`Layer`] turns a connection's wire bytes into plain lines
//!   and back, with no I/O of its own. Layers stack ([`Stack`]); TLS
//!   (`tls::TlsLayer`, feature `tls`) and WebSocket with the browser page
//!   (`ws::WsLayer`, feature `websocket`) are layers, and so is any
//!   transport of yours: a [`Listener`](crate::server::Listener) pairs a TCP
//!   listener with the layers each of its connections runs, and
//!   [`Server::add_listener`](crate::Server::add_listener) serves it in the
//!   same room, on the event loops (or on threads). See [`layer`] for how to
//!   write one, with an example.
//! - **A blocking [`Transport`], on threads**: it hands out
//!   [`Connection`]s; each splits into a read half and a write half that
//!   two threads drive independently ([`Server::run`](crate::Server::run)).
//!   Anything that offers blocking reads and writes with timeouts can carry
//!   the chat this way, sockets or not.
//!
//! Two blocking transports ship with the crate: [`TcpTransport`] (std TCP
//! sockets; the event loops poll its listener) and [`MemoryTransport`]
//! (in-process pipes, for tests and embedding).
//!
//! # Implementing a transport
//!
//! - [`Transport::accept`] blocks until a connection arrives. A failure is
//!   an `Err`; the server logs it and calls `accept` again after a pause
//!   that doubles while failures follow each other (1 ms up to 1 s). Only
//!   an error that says the listener itself is unusable ends the server:
//!   on Unix `EBADF`, `ENOTSOCK`, `EINVAL` or `EFAULT`; without an OS code,
//!   [`io::ErrorKind::NotConnected`], `InvalidInput` or `Unsupported`. A
//!   failure that belongs to one connection (setting it up, say) is best
//!   handled inside `accept`: drop that connection and wait for the next.
//! - [`Transport::wake`] makes a blocked (or the next) `accept` return soon,
//!   with a connection or an error: the server calls it when shutting down,
//!   then sees the shutdown flag and stops accepting.
//! - [`ReadHalf`] is `io::Read`: `Ok(0)` means the peer's input ended; a read
//!   that exceeds its timeout fails with `WouldBlock` or `TimedOut`.
//! - [`WriteHalf`] is `io::Write` (vectored writes welcome); a write that
//!   exceeds its timeout fails with `WouldBlock` or `TimedOut`, or returns a
//!   partial count. `shutdown(Write)` ends the stream after what was written;
//!   `shutdown(Read)` makes a blocked read on the other half return `Ok(0)`.
//!   The server ends a connection with [`WriteHalf::close`], which says why
//!   (by default it is `shutdown(Write)`), after a `flush` that it retries
//!   while it times out: a transport that encodes lines may keep some bytes
//!   back from a write that timed out, and send them on `flush`.
//! - Dropping both halves closes the connection.
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::net::Shutdown;
//! use std::time::Duration;
//! use chatcore::transport::{Connection, ReadHalf, Transport, WriteHalf};
//!
//! /// A transport with no connections (a real one waits on a listener, a
//! /// pipe, a TLS acceptor...).
//! struct Closed;
//!
//! /// A connection whose input has ended and whose output goes nowhere.
//! struct Nothing;
//!
//! impl Read for Nothing {
//!     fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
//!         Ok(0)
//!     }
//! }
//! impl Write for Nothing {
//!     fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
//!         Ok(buf.len())
//!     }
//!     fn flush(&mut self) -> io::Result<()> {
//!         Ok(())
//!     }
//! }
//! impl ReadHalf for Nothing {
//!     fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
//!         Ok(())
//!     }
//! }
//! impl WriteHalf for Nothing {
//!     fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
//!         Ok(())
//!     }
//!     fn shutdown(&self, _: Shutdown) -> io::Result<()> {
//!         Ok(())
//!     }
//! }
//! impl Connection for Nothing {
//!     type Reader = Nothing;
//!     type Writer = Nothing;
//!     fn split(self) -> io::Result<(Nothing, Nothing)> {
//!         Ok((Nothing, Nothing))
//!     }
//!     fn peer(&self) -> String {
//!         "nobody".into()
//!     }
//! }
//! impl Transport for Closed {
//!     type Connection = Nothing;
//!     fn accept(&self) -> io::Result<Nothing> {
//!         Err(io::Error::new(io::ErrorKind::NotConnected, "closed"))
//!     }
//!     fn wake(&self) {}
//! }
//! assert!(Closed.accept().is_err());
//! ```

pub mod layer;
mod memory;
mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "websocket")]
pub mod ws;

use std::io;
use std::net::Shutdown;
use std::time::Duration;

pub use layer::{CloseReason, Layer, LayerError, LayerEvent, Plain, Stack};
pub use memory::{
    MemoryClient, MemoryConnection, MemoryConnector, MemoryReader, MemoryTransport, MemoryWriter,
    DEFAULT_PIPE_CAPACITY,
};
pub(crate) use tcp::accept_nonblocking;
pub(crate) use tcp::reset_on_close;
pub use tcp::{TcpConnection, TcpTransport};

/// A source of connections.
pub trait Transport: Send + Sync + 'static {
    /// The connections it hands out.
    type Connection: Connection;

    /// Waits for the next connection.
    fn accept(&self) -> io::Result<Self::Connection>;

    /// Makes a pending (or the next) [`Transport::accept`] return soon.
    fn wake(&self);
}

/// One client's connection, before it is split for reading and writing.
pub trait Connection: Send + 'static {
    /// The half that reads the client's bytes.
    type Reader: ReadHalf;
    /// The half that writes to the client.
    type Writer: WriteHalf;

    /// Splits the connection so that two threads can drive it.
    fn split(self) -> io::Result<(Self::Reader, Self::Writer)>;

    /// Who is on the other end, for logs.
    fn peer(&self) -> String;
}

/// The reading half of a connection.
pub trait ReadHalf: io::Read + Send + 'static {
    /// Bounds each following read (`None`: wait as long as it takes).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

/// The writing half of a connection.
pub trait WriteHalf: io::Write + Send + 'static {
    /// Bounds each following write (`None`: wait as long as it takes).
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Shuts down one or both directions of the whole connection.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;

    /// Ends the stream after what was written, the server's way: `reason`
    /// says why, for a transport whose closing can tell the client (a
    /// WebSocket close code: 1000 after `QUIT`, 1001 at shutdown, 1013 when
    /// the server is full, 1008 for a name timeout). The server calls it
    /// once, after its last line. By default, [`WriteHalf::shutdown`] of the
    /// writing direction.
    fn close(&self, reason: CloseReason) -> io::Result<()> {
        let _ = reason;
        self.shutdown(Shutdown::Write)
    }

    /// Ends the connection at once, dropping whatever it still had to send
    /// (a member cut as a slow consumer: what it was not sent is of no use
    /// to it, and must not hold memory anywhere, the kernel's included). By
    /// default, [`WriteHalf::shutdown`] of both directions.
    fn abort(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Both)
    }
}

/// Whether an I/O error means "the timeout passed" rather than a failure.
pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
