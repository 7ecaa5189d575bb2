//! The identity layer: line over plain TCP.

use bytes::BytesMut;

use super::{CloseReason, Layer, LayerError, LayerEvent};

/// Passes bytes through unchanged in both directions: plain lines over TCP.
///
/// It has no handshake, so it is established at once and reports
/// [`LayerEvent::Established`] on the first [`Layer::poll_event`]. Closing
/// is the driver's business (it shuts the socket down), so
/// [`Layer::close`] only stops what is sent after it.
#[derive(Debug, Default)]
pub struct Plain {
    reported: bool,
    closed: bool,
}

impl Plain {
    /// A new identity layer.
    pub fn new() -> Self {
        Plain::default()
    }
}

impl Layer for Plain {
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError> {
        if plain.is_empty() {
            // Hand the buffer over instead of copying it.
            std::mem::swap(input, plain);
        } else {
            plain.extend_from_slice(input);
            input.clear();
        }
        Ok(())
    }

    fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
        if !self.closed {
            output.extend_from_slice(plain);
        }
    }

    fn poll_transmit(&mut self, _output: &mut BytesMut) {}

    fn poll_event(&mut self) -> Option<LayerEvent> {
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(LayerEvent::Established)
    }

    fn close(&mut self, _reason: CloseReason) {
        self.closed = true;
    }

    fn is_established(&self) -> bool {
        true
    }

    fn wants_write(&self) -> bool {
        false
    }

    fn is_finished(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_passes_bytes_through_both_ways() {
        let mut layer = Plain::new();
        assert_eq!(layer.poll_event(), Some(LayerEvent::Established));
        assert_eq!(layer.poll_event(), None);

        let mut input = BytesMut::from(&b"ana\nhel"[..]);
        let mut plain = BytesMut::new();
        layer.receive(&mut input, &mut plain).unwrap();
        assert!(input.is_empty());
        input.extend_from_slice(b"lo\n");
        layer.receive(&mut input, &mut plain).unwrap();
        assert_eq!(&plain[..], b"ana\nhello\n");

        let mut wire = BytesMut::new();
        layer.send(b"NAME\n", &mut wire);
        assert_eq!(&wire[..], b"NAME\n");
    }

    #[test]
    fn plain_sends_nothing_after_close() {
        let mut layer = Plain::new();
        let mut wire = BytesMut::new();
        layer.close(CloseReason::Normal);
        layer.send(b"late\n", &mut wire);
        layer.poll_transmit(&mut wire);
        assert!(wire.is_empty());
        assert!(!layer.wants_write());
    }
}
