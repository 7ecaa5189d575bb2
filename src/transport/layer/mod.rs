//! Byte layers: what sits between a socket's bytes and the plain lines.
//!
//! A [`Layer`] turns the bytes that arrive from below (the socket, or the
//! layer under it) into plain bytes for the layer above (in the end, the
//! session's [`LineCodec`](crate::protocol::LineCodec)), and the plain lines
//! the server sends into bytes for below. It does no I/O of its own, like
//! rustls' `ServerConnection` or quinn-proto's `Connection`: a driver owns
//! the socket and the timers, feeds the layer what it read, and writes what
//! the layer hands back. The same layers therefore run on the event loops,
//! on threads, and in unit tests over plain buffers.
//!
//! Layers stack ([`Stack`]): TCP ([`Plain`]), then TLS (`tls::TlsLayer`,
//! feature `tls`), then WebSocket (`ws::WsLayer`, feature `websocket`), then
//! lines. The room keeps plain lines; each connection's
//! layers frame and encrypt them at write time.
//!
//! # Driving a layer
//!
//! A driver calls, for each connection:
//!
//! - [`Layer::receive`] with what it read: the layer consumes what it can
//!   from the front of the input (an unfinished unit, such as half a frame
//!   header, stays for the next call: keep it and append to it) and appends
//!   the plain bytes it yields. An `Err` means the connection is over: write
//!   what [`Layer::poll_transmit`] gives (an alert, a close frame, an HTTP
//!   error), then close it.
//! - [`Layer::poll_event`] until `None`: [`LayerEvent::Established`] says
//!   lines may now be sent; [`LayerEvent::PeerClosed`] is an end of input.
//! - [`Layer::send`] with the lines to send, once established. Lines are
//!   whole (`\n`-terminated) in the common case; a layer must accept a line
//!   split across calls too.
//! - [`Layer::poll_transmit`] when it can write: the layer's own output
//!   (handshake, pongs, close frames) goes out after what `send` gave.
//!   [`Layer::wants_write`] says whether there is any.
//! - [`Layer::close`] when the server ends the connection (after its last
//!   line), then `poll_transmit` once more.
//! - When [`Layer::is_finished`], it closes the socket once the output is
//!   written.
//!
//! # Implementing a layer
//!
//! - `receive` never blocks and never holds more than a bounded amount: a
//!   layer that needs a whole unit (a header, a record) leaves its bytes in
//!   `input`, up to a limit it enforces; everything it has decoded goes to
//!   `plain`.
//! - `send` appends to `output` at once; it never reorders lines.
//! - A layer's own output waits in the layer until `poll_transmit`; keep it
//!   small (answer only the latest ping, say), because a client that does
//!   not read must not make it grow.
//! - Report [`LayerEvent::Established`] exactly once, when plain bytes may
//!   start to flow (a layer with no handshake reports it on the first
//!   `poll_event`), and [`LayerEvent::PeerClosed`] at most once.
//! - Free buffers that become empty: an idle connection should cost only the
//!   layer's own fields.
//!
//! A layer that reads the HAProxy PROXY protocol header (version 1, the
//! text form) before anything else, stacked under plain lines:
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use chatcore::transport::layer::{
//!     CloseReason, Layer, LayerError, LayerEvent, Plain, Stack,
//! };
//!
//! /// Reads `PROXY ...\r\n` (at most 107 bytes), then passes bytes through.
//! #[derive(Debug, Default)]
//! struct ProxyHeader {
//!     /// The client's address as the proxy saw it, once read.
//!     client: Option<String>,
//!     reported: bool,
//!     failed: bool,
//! }
//!
//! impl Layer for ProxyHeader {
//!     fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut)
//!         -> Result<(), LayerError>
//!     {
//!         if self.client.is_none() {
//!             let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
//!                 if input.len() > 107 {
//!                     self.failed = true;
//!                     return Err(LayerError::other("PROXY header too long"));
//!                 }
//!                 return Ok(()); // wait for the rest of the header
//!             };
//!             let header = String::from_utf8_lossy(&input[..end]).into_owned();
//!             let mut fields = header.split(' ');
//!             if fields.next() != Some("PROXY") {
//!                 self.failed = true;
//!                 return Err(LayerError::other("not a PROXY header"));
//!             }
//!             self.client = fields.nth(1).map(str::to_owned);
//!             input.advance(end + 2);
//!         }
//!         plain.extend_from_slice(input);
//!         input.clear();
//!         Ok(())
//!     }
//!     fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
//!         output.extend_from_slice(plain);
//!     }
//!     fn poll_transmit(&mut self, _output: &mut BytesMut) {}
//!     fn poll_event(&mut self) -> Option<LayerEvent> {
//!         if self.is_established() && !self.reported {
//!             self.reported = true;
//!             return Some(LayerEvent::Established);
//!         }
//!         None
//!     }
//!     fn close(&mut self, _reason: CloseReason) {}
//!     fn is_established(&self) -> bool {
//!         self.client.is_some()
//!     }
//!     fn wants_write(&self) -> bool {
//!         false
//!     }
//!     fn is_finished(&self) -> bool {
//!         self.failed
//!     }
//! }
//!
//! // Stacked under the plain line layer, as a driver would run it.
//! let mut conn = Stack::new(ProxyHeader::default(), Plain::new());
//! let (mut input, mut lines) = (BytesMut::new(), BytesMut::new());
//! for read in [&b"PROXY TCP4 203.0.113.7 "[..], b"192.0.2.1 5000 7000\r\nana\n"] {
//!     input.extend_from_slice(read);
//!     conn.receive(&mut input, &mut lines)?;
//! }
//! assert_eq!(conn.poll_event(), Some(LayerEvent::Established));
//! assert_eq!(conn.lower().client.as_deref(), Some("203.0.113.7"));
//! assert_eq!(&lines[..], b"ana\n"); // for the session
//!
//! let mut wire = BytesMut::new();
//! conn.send(b"Welcome to the chat, ana!\n", &mut wire);
//! conn.poll_transmit(&mut wire);
//! assert_eq!(&wire[..], b"Welcome to the chat, ana!\n"); // for the socket
//! # Ok::<(), LayerError>(())
//! ```
//!
//! A driver that serves a [`Box<dyn Layer>`](Layer) serves any stack,
//! built-in or not: `Stack::new(TlsLayer, WsLayer)` is `wss`.

mod plain;
mod stack;

use std::error::Error as StdError;
use std::fmt;

use bytes::BytesMut;

pub use plain::Plain;
pub use stack::Stack;

/// A sans-I/O byte layer between a connection's wire bytes and its plain
/// lines. See the [module docs](self) for how drivers call it and how to
/// implement one.
pub trait Layer: fmt::Debug + Send {
    /// Handles bytes that arrived from below: consumes what it can from the
    /// front of `input` and appends the plain bytes it yields to `plain`.
    /// Bytes left in `input` are an unfinished unit; the caller keeps them
    /// and appends what it reads next.
    ///
    /// An `Err` ends the connection: what [`Layer::poll_transmit`] gives is
    /// its last output, and [`Layer::is_finished`] is then true.
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError>;

    /// Encodes plain bytes (the server's lines) and appends the result to
    /// `output`. Call it only once the layer is established; after
    /// [`Layer::close`], what it is given is dropped.
    fn send(&mut self, plain: &[u8], output: &mut BytesMut);

    /// Appends the layer's own pending output (handshake messages, pongs,
    /// close frames, alerts) to `output`.
    fn poll_transmit(&mut self, output: &mut BytesMut);

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<LayerEvent>;

    /// Ends the connection from the server's side, after what was sent so
    /// far; the closing bytes come out of [`Layer::poll_transmit`].
    fn close(&mut self, reason: CloseReason);

    /// Whether plain bytes flow both ways: the handshake, if any, is done.
    fn is_established(&self) -> bool;

    /// Whether [`Layer::poll_transmit`] has something to give.
    fn wants_write(&self) -> bool;

    /// Whether the connection is over for this layer: once what
    /// [`Layer::poll_transmit`] gives is written, the driver closes it.
    fn is_finished(&self) -> bool;
}

/// Something a layer tells its driver besides bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerEvent {
    /// The handshake is done: [`Layer::send`] may now carry lines.
    Established,
    /// The peer closed its side in the layer's own terms (a WebSocket close
    /// frame, a TLS `close_notify`): an end of input, as over TCP.
    PeerClosed {
        /// The WebSocket close code the peer sent, if any.
        code: Option<u16>,
    },
}

/// Why the server ends a connection; a layer that can say why (WebSocket's
/// close codes) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client asked to leave (`QUIT`): WebSocket code 1000.
    Normal,
    /// The server is shutting down: WebSocket code 1001.
    Shutdown,
    /// The server is full: WebSocket code 1013 ("try again later").
    Full,
    /// Any other reason of the server's (a name timeout, a slow consumer):
    /// WebSocket code 1008 ("policy violation").
    Policy,
}

impl CloseReason {
    /// The WebSocket close code for this reason (RFC 6455, section 7.4).
    pub fn websocket_code(self) -> u16 {
        match self {
            CloseReason::Normal => 1000,
            CloseReason::Shutdown => 1001,
            CloseReason::Full => 1013,
            CloseReason::Policy => 1008,
        }
    }
}

/// Why a layer ended its connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The TLS layer failed: garbage, a failed handshake, a bad record.
    #[cfg(feature = "tls")]
    #[error("TLS failed")]
    Tls(#[source] rustls::Error),
    /// The WebSocket layer refused the request or the peer broke RFC 6455.
    #[cfg(feature = "websocket")]
    #[error(transparent)]
    WebSocket(#[from] crate::transport::ws::WsError),
    /// A layer of the user's.
    #[error("layer failed")]
    Other(#[source] Box<dyn StdError + Send + Sync>),
}

impl LayerError {
    /// An error of a layer of the user's, from a message or another error.
    pub fn other(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        LayerError::Other(error.into())
    }
}

impl<L: Layer + ?Sized> Layer for Box<L> {
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError> {
        (**self).receive(input, plain)
    }
    fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
        (**self).send(plain, output)
    }
    fn poll_transmit(&mut self, output: &mut BytesMut) {
        (**self).poll_transmit(output)
    }
    fn poll_event(&mut self) -> Option<LayerEvent> {
        (**self).poll_event()
    }
    fn close(&mut self, reason: CloseReason) {
        (**self).close(reason)
    }
    fn is_established(&self) -> bool {
        (**self).is_established()
    }
    fn wants_write(&self) -> bool {
        (**self).wants_write()
    }
    fn is_finished(&self) -> bool {
        (**self).is_finished()
    }
}

/// Replaces an emptied buffer whose allocation is worth giving back, so an
/// idle connection keeps no buffer.
pub(crate) fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}
