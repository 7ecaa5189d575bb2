//! The receiving half of the WebSocket layer: client frames to lines.

use bytes::{Buf, BufMut, BytesMut};

use super::frame::{
    parse_client_header, unmask, Header, Utf8Check, INVALID_PAYLOAD, MAX_CONTROL_PAYLOAD,
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, PROTOCOL_ERROR, UNSUPPORTED_DATA,
};
use super::{Phase, WsError, WsLayer};

/// The frame being received, its header read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Incoming {
    pub(super) header: Header,
    /// Payload bytes still to come.
    pub(super) remaining: u64,
    /// Payload bytes already seen (for unmasking).
    pub(super) offset: u64,
}

/// A text message being received.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Message {
    pub(super) utf8: Utf8Check,
    /// Whether the last byte handed on ended a line (or none was).
    pub(super) at_line_start: bool,
}

/// A control frame's payload (at most 125 bytes), kept inline.
#[derive(Clone, Copy)]
pub(super) struct Control {
    pub(super) bytes: [u8; MAX_CONTROL_PAYLOAD],
    pub(super) len: u8,
}

impl Control {
    pub(super) const EMPTY: Control = Control {
        bytes: [0; MAX_CONTROL_PAYLOAD],
        len: 0,
    };

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn extend(&mut self, more: &[u8]) {
        // The header check bounds a control payload to 125 bytes.
        let start = usize::from(self.len);
        let end = (start + more.len()).min(MAX_CONTROL_PAYLOAD);
        self.bytes[start..end].copy_from_slice(&more[..end - start]);
        self.len = end as u8;
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control({} bytes)", self.len)
    }
}

impl WsLayer {
    /// Reads frames until the input runs out or the connection ends.
    pub(super) fn read_frames(
        &mut self,
        input: &mut BytesMut,
        plain: &mut BytesMut,
    ) -> Result<(), WsError> {
        while self.phase == Phase::Open {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let parsed = match parse_client_header(input) {
                        Ok(parsed) => parsed,
                        Err(v) => return self.fail(v.code, v.reason),
                    };
                    let Some((header, len)) = parsed else {
                        return Ok(());
                    };
                    input.advance(len);
                    self.start_frame(header)?;
                    Incoming {
                        header,
                        remaining: header.len,
                        offset: 0,
                    }
                }
            };
            let take = usize::try_from(frame.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            if take > 0 {
                let payload = &mut input[..take];
                unmask(payload, frame.header.mask, frame.offset);
                let result = self.payload(&frame.header, payload, plain);
                input.advance(take);
                frame.remaining -= take as u64;
                frame.offset += take as u64;
                result?;
            }
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok(());
            }
            self.frame = None;
            self.end_frame(&frame.header, plain)?;
        }
        Ok(())
    }

    /// Checks a frame's place in the message stream as its header arrives.
    fn start_frame(&mut self, header: Header) -> Result<(), WsError> {
        match header.opcode {
            OP_TEXT | OP_BINARY if self.message.is_some() => {
                self.fail(PROTOCOL_ERROR, "a new message inside a fragmented one")
            }
            OP_CONTINUATION if self.message.is_none() => {
                self.fail(PROTOCOL_ERROR, "a continuation frame with no message")
            }
            OP_BINARY => self.fail(UNSUPPORTED_DATA, "binary messages are not accepted"),
            OP_TEXT => {
                self.message = Some(Message {
                    at_line_start: true,
                    ..Message::default()
                });
                Ok(())
            }
            _ => {
                self.control.len = 0;
                Ok(())
            }
        }
    }

    /// Handles (unmasked) payload bytes of the current frame.
    fn payload(
        &mut self,
        header: &Header,
        payload: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), WsError> {
        if header.is_control() {
            self.control.extend(payload);
            return Ok(());
        }
        let Some(message) = &mut self.message else {
            return Ok(());
        };
        let checked = message.utf8.feed(payload);
        // After its own close frame the server reads only to find the
        // client's; lines that arrive meanwhile are dropped.
        let deliver = !self.close_sent;
        match checked {
            Ok(()) => {
                if deliver {
                    plain.extend_from_slice(payload);
                }
                if let Some(&last) = payload.last() {
                    message.at_line_start = last == b'\n';
                }
                Ok(())
            }
            Err(valid) => {
                if deliver {
                    plain.extend_from_slice(&payload[..valid]);
                }
                self.fail(INVALID_PAYLOAD, "a text message that is not UTF-8")
            }
        }
    }

    /// Handles a frame whose payload has all arrived.
    fn end_frame(&mut self, header: &Header, plain: &mut BytesMut) -> Result<(), WsError> {
        match header.opcode {
            OP_TEXT | OP_CONTINUATION if header.fin => {
                let Some(message) = self.message.take() else {
                    return Ok(());
                };
                if !message.utf8.is_complete() {
                    return self.fail(INVALID_PAYLOAD, "a text message that is not UTF-8");
                }
                if !message.at_line_start && !self.close_sent {
                    plain.put_u8(b'\n');
                }
                Ok(())
            }
            OP_PING if !self.close_sent => {
                self.pong = Some(self.control);
                Ok(())
            }
            OP_CLOSE => self.peer_close(),
            _ => Ok(()),
        }
    }

    /// The client's close frame: answer it (unless the server closed
    /// first) and end the connection.
    fn peer_close(&mut self) -> Result<(), WsError> {
        let payload = self.control;
        let payload = payload.as_slice();
        let code = match payload {
            [] => None,
            [_] => return self.fail(PROTOCOL_ERROR, "a close frame with a 1-byte payload"),
            [a, b, reason @ ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                if !is_valid_close_code(code) {
                    return self.fail(PROTOCOL_ERROR, "an invalid close code");
                }
                if std::str::from_utf8(reason).is_err() {
                    return self.fail(INVALID_PAYLOAD, "a close reason that is not UTF-8");
                }
                Some(code)
            }
        };
        self.close_received = true;
        self.peer_closed_due = Some(code);
        if !self.close_sent {
            self.queue_close(code);
        }
        self.finish();
        Ok(())
    }
}

/// Whether a client may send this close code (RFC 6455, section 7.4).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
