//! Two layers, one on top of the other, as one layer.

use bytes::BytesMut;

use super::{release_if_empty, CloseReason, Layer, LayerError, LayerEvent};

/// Two layers as one: `lower` faces the wire, `upper` faces the lines
/// (`Stack::new(tls, websocket)` is WebSocket over TLS). Stacks nest, so any
/// number of layers make one.
///
/// Bytes from the wire go through `lower` and then `upper`; lines go through
/// `upper` and then `lower`. The upper layer's own output (a pong, a close
/// frame) goes down through the lower one too, and when the stack closes,
/// the upper layer's closing bytes go out before the lower layer's (a
/// WebSocket close frame, then TLS `close_notify`). When the upper layer is
/// finished, the lower one is closed with it.
///
/// The stack reports [`LayerEvent::Established`] once both layers are, and
/// [`LayerEvent::PeerClosed`] once, from whichever layer saw it first.
#[derive(Debug)]
pub struct Stack<L, U> {
    lower: L,
    upper: U,
    /// Plain bytes of the lower layer that the upper one left (part of a
    /// header); empty, with no allocation, when idle.
    inbound: BytesMut,
    /// The upper layer's output on its way into the lower one; empty
    /// between calls.
    outbound: BytesMut,
    /// Why the stack was closed, until the lower layer is closed too.
    closing: Option<CloseReason>,
    lower_closed: bool,
    established_reported: bool,
    peer_closed_reported: bool,
}

impl<L: Layer, U: Layer> Stack<L, U> {
    /// `upper` on top of `lower`.
    pub fn new(lower: L, upper: U) -> Self {
        Stack {
            lower,
            upper,
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            closing: None,
            lower_closed: false,
            established_reported: false,
            peer_closed_reported: false,
        }
    }

    /// The layer next to the wire.
    pub fn lower(&self) -> &L {
        &self.lower
    }

    /// The layer next to the lines.
    pub fn upper(&self) -> &U {
        &self.upper
    }

    /// The layer next to the wire, mutably.
    pub fn lower_mut(&mut self) -> &mut L {
        &mut self.lower
    }

    /// The layer next to the lines, mutably.
    pub fn upper_mut(&mut self) -> &mut U {
        &mut self.upper
    }

    /// Closes the lower layer once the upper one has nothing more to say.
    fn close_lower_when_due(&mut self) {
        if self.lower_closed {
            return;
        }
        let reason = match self.closing {
            Some(reason) => reason,
            None if self.upper.is_finished() => CloseReason::Normal,
            None => return,
        };
        self.lower.close(reason);
        self.lower_closed = true;
    }
}

impl<L: Layer, U: Layer> Layer for Stack<L, U> {
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError> {
        // What the lower layer decoded before failing still goes up.
        let lower = self.lower.receive(input, &mut self.inbound);
        let upper = if self.inbound.is_empty() {
            Ok(())
        } else {
            self.upper.receive(&mut self.inbound, plain)
        };
        release_if_empty(&mut self.inbound);
        lower.and(upper)
    }

    fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
        self.upper.send(plain, &mut self.outbound);
        if !self.outbound.is_empty() {
            self.lower.send(&self.outbound, output);
            self.outbound.clear();
        }
        release_if_empty(&mut self.outbound);
    }

    fn poll_transmit(&mut self, output: &mut BytesMut) {
        self.upper.poll_transmit(&mut self.outbound);
        if !self.outbound.is_empty() {
            self.lower.send(&self.outbound, output);
            self.outbound.clear();
        }
        release_if_empty(&mut self.outbound);
        self.close_lower_when_due();
        self.lower.poll_transmit(output);
    }

    fn poll_event(&mut self) -> Option<LayerEvent> {
        if !self.established_reported && self.is_established() {
            self.established_reported = true;
            return Some(LayerEvent::Established);
        }
        while let Some(event) = self.lower.poll_event().or_else(|| self.upper.poll_event()) {
            match event {
                // Only the whole stack's is news to the driver.
                LayerEvent::Established => {}
                LayerEvent::PeerClosed { .. } if self.peer_closed_reported => {}
                LayerEvent::PeerClosed { .. } => {
                    self.peer_closed_reported = true;
                    return Some(event);
                }
            }
        }
        None
    }

    fn close(&mut self, reason: CloseReason) {
        self.upper.close(reason);
        self.closing.get_or_insert(reason);
    }

    fn is_established(&self) -> bool {
        self.lower.is_established() && self.upper.is_established()
    }

    fn wants_write(&self) -> bool {
        let lower_close_due =
            !self.lower_closed && (self.closing.is_some() || self.upper.is_finished());
        self.upper.wants_write() || self.lower.wants_write() || lower_close_due
    }

    fn is_finished(&self) -> bool {
        self.lower.is_finished() || self.upper.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::layer::Plain;

    /// A test layer that XORs every byte with a key, with a one-message
    /// handshake (`!`), a close byte (`#`) of its own, and a record of
    /// what it was closed with.
    #[derive(Debug, Default)]
    struct Xor {
        key: u8,
        greeted: bool,
        reported: bool,
        owes_greeting: bool,
        closed_with: Option<CloseReason>,
        close_due: bool,
    }

    impl Xor {
        fn new(key: u8) -> Self {
            Xor {
                key,
                ..Xor::default()
            }
        }
    }

    impl Layer for Xor {
        fn receive(
            &mut self,
            input: &mut BytesMut,
            plain: &mut BytesMut,
        ) -> Result<(), LayerError> {
            let mut bytes = &input[..];
            if !self.greeted {
                let Some((&first, rest)) = bytes.split_first() else {
                    return Ok(());
                };
                if first != b'!' {
                    return Err(LayerError::other("no greeting"));
                }
                self.greeted = true;
                self.owes_greeting = true;
                bytes = rest;
            }
            plain.extend(bytes.iter().map(|b| b ^ self.key));
            input.clear();
            Ok(())
        }
        fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
            if self.closed_with.is_none() {
                output.extend(plain.iter().map(|b| b ^ self.key));
            }
        }
        fn poll_transmit(&mut self, output: &mut BytesMut) {
            if std::mem::take(&mut self.owes_greeting) {
                output.extend_from_slice(b"!");
            }
            if std::mem::take(&mut self.close_due) {
                output.extend_from_slice(b"#");
            }
        }
        fn poll_event(&mut self) -> Option<LayerEvent> {
            if self.greeted && !self.reported {
                self.reported = true;
                return Some(LayerEvent::Established);
            }
            None
        }
        fn close(&mut self, reason: CloseReason) {
            if self.closed_with.is_none() {
                self.closed_with = Some(reason);
                self.close_due = true;
            }
        }
        fn is_established(&self) -> bool {
            self.greeted
        }
        fn wants_write(&self) -> bool {
            self.owes_greeting || self.close_due
        }
        fn is_finished(&self) -> bool {
            false
        }
    }

    fn xor(bytes: &[u8], key: u8) -> Vec<u8> {
        bytes.iter().map(|b| b ^ key).collect()
    }

    #[test]
    fn stack_runs_both_handshakes_then_lines_both_ways() {
        let mut stack = Stack::new(Xor::new(0x20), Xor::new(0x01));
        let (mut input, mut plain, mut wire) = (BytesMut::new(), BytesMut::new(), BytesMut::new());

        input.extend_from_slice(b"!");
        stack.receive(&mut input, &mut plain).unwrap();
        assert!(!stack.is_established());
        assert_eq!(stack.poll_event(), None);
        assert!(stack.wants_write());
        stack.poll_transmit(&mut wire);
        assert_eq!(&wire[..], b"!");
        wire.clear();

        // The upper greeting travels inside the lower layer, then a line.
        let mut bytes = xor(b"!", 0x20);
        bytes.extend(xor(&xor(b"ana\n", 0x01), 0x20));
        input.extend_from_slice(&bytes);
        stack.receive(&mut input, &mut plain).unwrap();
        assert!(stack.is_established());
        assert_eq!(stack.poll_event(), Some(LayerEvent::Established));
        assert_eq!(stack.poll_event(), None);
        assert_eq!(&plain[..], b"ana\n");

        stack.poll_transmit(&mut wire);
        stack.send(b"hi\n", &mut wire);
        let mut expected = xor(b"!", 0x20);
        expected.extend(xor(&xor(b"hi\n", 0x01), 0x20));
        assert_eq!(&wire[..], &expected[..]);
    }

    #[test]
    fn stack_closes_upper_first_then_lower() {
        let mut stack = Stack::new(Xor::new(0x20), Xor::new(0x01));
        let (mut input, mut plain, mut wire) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
        input.extend_from_slice(b"!");
        input.extend_from_slice(&xor(b"!", 0x20));
        stack.receive(&mut input, &mut plain).unwrap();
        stack.poll_transmit(&mut wire);
        wire.clear();

        stack.send(b"bye\n", &mut wire);
        stack.close(CloseReason::Shutdown);
        assert!(stack.wants_write());
        stack.poll_transmit(&mut wire);
        let mut expected = xor(&xor(b"bye\n", 0x01), 0x20);
        expected.extend(xor(b"#", 0x20)); // the upper close, inside the lower
        expected.extend(b"#"); // then the lower close
        assert_eq!(&wire[..], &expected[..]);
        assert_eq!(stack.upper().closed_with, Some(CloseReason::Shutdown));
        assert_eq!(stack.lower().closed_with, Some(CloseReason::Shutdown));
        assert!(!stack.wants_write());

        wire.clear();
        stack.send(b"late\n", &mut wire);
        stack.poll_transmit(&mut wire);
        assert!(wire.is_empty(), "nothing goes out after close");
    }

    #[test]
    fn stack_passes_up_what_the_lower_layer_decoded_and_reports_its_error() {
        let mut stack = Stack::new(Xor::new(0), Plain::new());
        let mut plain = BytesMut::new();
        let error = stack
            .receive(&mut BytesMut::from(&b"?"[..]), &mut plain)
            .unwrap_err();
        assert!(matches!(error, LayerError::Other(_)));
    }

    #[test]
    fn stack_of_stacks_is_a_layer() {
        let inner = Stack::new(Xor::new(0x20), Plain::new());
        let mut stack: Box<dyn Layer> = Box::new(Stack::new(inner, Plain::new()));
        let (mut input, mut plain) = (BytesMut::from(&b"!"[..]), BytesMut::new());
        input.extend_from_slice(&xor(b"hi\n", 0x20));
        stack.receive(&mut input, &mut plain).unwrap();
        assert_eq!(stack.poll_event(), Some(LayerEvent::Established));
        assert_eq!(&plain[..], b"hi\n");
    }
}
