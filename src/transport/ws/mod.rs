//! WebSocket (RFC 6455), server side, as a sans-I/O [`Layer`]: the HTTP
//! request head (the browser page, or the upgrade), then frames.
//!
//! What [`WsLayer`] does, as `PROTOCOL.md` ("Transports") specifies it:
//!
//! - `GET /` answers `200` with the chat page ([`CHAT_PAGE`], or a page of
//!   the caller's), `GET /ws` with a valid upgrade answers `101`; another
//!   path is `404`, another method `405`, a request that is not HTTP or
//!   whose head passes 8 KiB ([`MAX_REQUEST_HEAD`]) `400`, an upgrade for
//!   another WebSocket version `426`. Then the connection closes, except
//!   after `101`.
//! - Each text message holds one or more lines separated by `\n` (`\r\n`
//!   too; the final newline is optional). The layer hands them to the
//!   session as the bytes of `\n`-terminated lines, so the line rules are the
//!   ones of TCP: in particular a line over the limit gets
//!   `Line too long (max <limit> bytes).` from the session, is discarded up
//!   to its end, and **the connection stays open** (the layer never closes
//!   with 1009).
//! - A text message that is not UTF-8 closes the connection with 1007: the
//!   lines of that message completed before the first invalid byte count,
//!   the rest does not. A binary message closes it with 1003. A frame that
//!   breaks RFC 6455 (unmasked, reserved bits, an unknown opcode, a
//!   fragmented or long control frame, a continuation with no message, a
//!   new message inside a fragmented one) closes it with 1002.
//! - A ping is answered with a pong (only the latest, if pings come faster
//!   than the client reads). A client's close frame is answered with a
//!   close frame echoing its code, and ends the connection at once
//!   ([`LayerEvent::PeerClosed`]).
//! - Each server line is one text message without its `\n`. The server's
//!   own close ([`Layer::close`]) is a close frame with the code of its
//!   [`CloseReason`]: 1000, 1001, 1013 or 1008.
//! - No extension or subprotocol is negotiated; the `Origin` is not checked
//!   (the chat has no cookies or credentials that another site could use).
//!
//! # Why a frame codec of its own
//!
//! tungstenite's `WebSocketContext` would do the framing over buffers, but
//! it does not fit the memory bound of an idle member (4 KiB, driver
//! included). Measured with a counting allocator (tungstenite 0.28, one
//! server context after two messages in and fifty out): 128 KiB of heap
//! with the default configuration, allocated when the context is made and
//! kept; still 4.1 KiB with its read buffer cut to 4 KiB and no write
//! buffer, plus 256 bytes inline. It also gathers a whole message before
//! handing it over, so a client message of many short lines costs up to the
//! message limit rather than one line limit, and each line sent must become
//! an owned message. This codec streams instead: payload bytes are unmasked
//! in the driver's read buffer and passed on as they arrive, so an idle
//! connection holds no heap at all (this struct is under 400 bytes; see
//! `tests/layer_memory.rs`), and a message costs at most a frame header and
//! three bytes of a split character on top of what the session's line
//! codec holds (one line limit).

mod frame;
mod http;
mod receive;

use bytes::{Buf, Bytes, BytesMut};

use crate::transport::layer::{release_if_empty, CloseReason, Layer, LayerError, LayerEvent};
use frame::{put_frame, OP_CLOSE, OP_CONTINUATION, OP_TEXT};
use http::{read_head, Head, Outcome};
use receive::{Control, Incoming, Message};

pub use http::{accept_key, MAX_REQUEST_HEAD, WEBSOCKET_PATH};

/// The browser chat page served on `GET /`: one self-contained HTML file
/// (inline CSS and JavaScript; it loads nothing from other hosts) that
/// speaks to `/ws` on the host it came from.
pub const CHAT_PAGE: &str = include_str!("page.html");

/// Why the WebSocket layer ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The HTTP request was answered with an error status.
    #[error("HTTP request refused with {status}: {reason}")]
    Refused {
        /// The status sent (400, 404, 405 or 426).
        status: u16,
        /// Why.
        reason: &'static str,
    },
    /// The client broke the rules; the connection was closed with `code`.
    #[error("WebSocket closed with {code}: {reason}")]
    Closed {
        /// The close code sent (1002, 1003 or 1007).
        code: u16,
        /// Why.
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the HTTP request head.
    Request,
    /// Exchanging frames.
    Open,
    /// Nothing more to read or send (but what waits in `own`).
    Finished,
}

/// The WebSocket layer of one connection: serves the page or upgrades, then
/// turns text messages into lines and lines into text messages.
///
/// ```
/// use bytes::BytesMut;
/// use chatcore::transport::layer::{Layer, LayerEvent};
/// use chatcore::transport::ws::WsLayer;
///
/// let mut ws = WsLayer::new();
/// let mut input = BytesMut::from(
///     "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
///      Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
///      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
/// );
/// // A masked text frame: "hi" (mask 0,0,0,0 keeps the example readable).
/// input.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
/// let mut lines = BytesMut::new();
/// ws.receive(&mut input, &mut lines)?;
/// assert_eq!(ws.poll_event(), Some(LayerEvent::Established));
/// assert_eq!(&lines[..], b"hi\n");
///
/// let mut wire = BytesMut::new();
/// ws.send(b"NAME\n", &mut wire); // the 101 response goes first
/// assert!(wire.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(wire.ends_with(&[0x81, 4, b'N', b'A', b'M', b'E']));
/// # Ok::<(), chatcore::transport::LayerError>(())
/// ```
#[derive(Debug)]
pub struct WsLayer {
    phase: Phase,
    page: Bytes,
    upgraded: bool,
    frame: Option<Incoming>,
    message: Option<Message>,
    control: Control,
    /// The pong owed for the latest ping.
    pong: Option<Control>,
    /// A line went out in pieces and its last piece is still to come.
    sending_fragmented: bool,
    close_sent: bool,
    close_received: bool,
    /// The layer's own output: an HTTP response, a close frame.
    own: BytesMut,
    established_due: bool,
    peer_closed_due: Option<Option<u16>>,
}

impl WsLayer {
    /// A layer that serves [`CHAT_PAGE`] on `GET /`.
    pub fn new() -> Self {
        Self::with_page(Bytes::from_static(CHAT_PAGE.as_bytes()))
    }

    /// A layer that serves `page` (UTF-8 HTML) on `GET /`.
    pub fn with_page(page: Bytes) -> Self {
        WsLayer {
            phase: Phase::Request,
            page,
            upgraded: false,
            frame: None,
            message: None,
            control: Control::EMPTY,
            pong: None,
            sending_fragmented: false,
            close_sent: false,
            close_received: false,
            own: BytesMut::new(),
            established_due: false,
            peer_closed_due: None,
        }
    }

    /// Reads the request head, if it is all there, and answers it.
    fn read_request(&mut self, input: &mut BytesMut) -> Result<(), WsError> {
        let Head::Done { outcome, len } = read_head(input, &self.page) else {
            return Ok(());
        };
        input.advance(len.min(input.len()));
        match outcome {
            Outcome::Upgrade(response) => {
                self.own.extend_from_slice(&response);
                self.phase = Phase::Open;
                self.upgraded = true;
                self.established_due = true;
                Ok(())
            }
            Outcome::Page(response) => {
                self.own.extend_from_slice(&response);
                self.finish();
                Ok(())
            }
            Outcome::Refused {
                status,
                reason,
                response,
            } => {
                self.own.extend_from_slice(&response);
                self.finish();
                Err(WsError::Refused { status, reason })
            }
        }
    }

    /// Closes the connection for a broken rule.
    fn fail(&mut self, code: u16, reason: &'static str) -> Result<(), WsError> {
        if !self.close_sent {
            self.queue_close(Some(code));
        }
        self.finish();
        Err(WsError::Closed { code, reason })
    }

    /// Queues a close frame (with `code`, or empty); nothing follows it.
    fn queue_close(&mut self, code: Option<u16>) {
        self.flush_pong();
        let payload = code.map(u16::to_be_bytes);
        put_frame(
            &mut self.own,
            true,
            OP_CLOSE,
            payload.as_ref().map_or(&[], |p| &p[..]),
        );
        self.close_sent = true;
    }

    /// Moves an owed pong into `own`, ahead of what comes next.
    fn flush_pong(&mut self) {
        if let Some(pong) = self.pong.take() {
            if !self.close_sent {
                put_frame(&mut self.own, true, frame::OP_PONG, pong.as_slice());
            }
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Finished;
        self.frame = None;
        self.message = None;
    }
}

impl Default for WsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer for WsLayer {
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError> {
        if self.phase == Phase::Request {
            self.read_request(input)?;
        }
        if self.phase == Phase::Open {
            self.read_frames(input, plain)?;
        }
        if self.phase == Phase::Finished {
            input.clear();
        }
        Ok(())
    }

    fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
        // The 101 response (and an owed pong) go before any line.
        self.poll_transmit(output);
        if !self.upgraded || self.close_sent {
            return;
        }
        let mut rest = plain;
        while !rest.is_empty() {
            let opcode = if self.sending_fragmented {
                OP_CONTINUATION
            } else {
                OP_TEXT
            };
            match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    put_frame(output, true, opcode, &rest[..end]);
                    self.sending_fragmented = false;
                    rest = &rest[end + 1..];
                }
                None => {
                    // A line cut short by the caller: send what there is,
                    // the rest follows in continuation frames.
                    put_frame(output, false, opcode, rest);
                    self.sending_fragmented = true;
                    rest = &[];
                }
            }
        }
    }

    fn poll_transmit(&mut self, output: &mut BytesMut) {
        self.flush_pong();
        if !self.own.is_empty() {
            output.extend_from_slice(&self.own);
            self.own.clear();
        }
        release_if_empty(&mut self.own);
    }

    fn poll_event(&mut self) -> Option<LayerEvent> {
        if std::mem::take(&mut self.established_due) {
            return Some(LayerEvent::Established);
        }
        self.peer_closed_due
            .take()
            .map(|code| LayerEvent::PeerClosed { code })
    }

    fn close(&mut self, reason: CloseReason) {
        match self.phase {
            Phase::Request => self.finish(),
            Phase::Open if !self.close_sent => self.queue_close(Some(reason.websocket_code())),
            _ => {}
        }
    }

    fn is_established(&self) -> bool {
        self.upgraded
    }

    fn wants_write(&self) -> bool {
        !self.own.is_empty() || (self.pong.is_some() && !self.close_sent)
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }
}

#[cfg(test)]
mod tests;
