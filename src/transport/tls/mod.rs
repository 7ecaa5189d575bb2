//! TLS (1.2 and 1.3) as a sans-I/O [`Layer`], on rustls with its `ring`
//! provider, and the server's certificate ([`TlsCertificate`]).
//!
//! [`TlsLayer`] drives a [`rustls::ServerConnection`] over buffers, the way
//! rustls' own examples drive it over sockets: ciphertext goes in with
//! `read_tls` and `process_new_packets`, plaintext comes out of `reader()`
//! and goes in through `writer()`, ciphertext leaves with `write_tls`. A
//! handshake that fails (garbage on the port, a client that speaks HTTP, a
//! protocol version nobody shares) ends the connection with an alert and no
//! line. A client's `close_notify` is an end of input, as over TCP; the
//! server's close sends its own.
//!
//! ```
//! use std::sync::Arc;
//! use chatcore::transport::tls::{TlsCertificate, TlsLayer};
//!
//! let certificate = TlsCertificate::self_signed()?;
//! println!("TLS certificate SHA-256 fingerprint: {}", certificate.fingerprint());
//! let config = certificate.server_config()?;
//! let layer = TlsLayer::new(config)?; // one per connection
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cert;

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};

use crate::transport::layer::{CloseReason, Layer, LayerError, LayerEvent};

pub use cert::{CertError, TlsCertificate};

/// The TLS layer of one connection.
///
/// An idle connection holds the rustls connection state and its 4 KiB
/// record buffer; see the README's figures.
#[derive(Debug)]
pub struct TlsLayer {
    conn: rustls::ServerConnection,
    established_reported: bool,
    peer_closed_due: bool,
    peer_closed_reported: bool,
    closed: bool,
    failed: bool,
}

impl TlsLayer {
    /// A server connection with `config` (see
    /// [`TlsCertificate::server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsLayer {
            conn: rustls::ServerConnection::new(config)?,
            established_reported: false,
            peer_closed_due: false,
            peer_closed_reported: false,
            closed: false,
            failed: false,
        })
    }

    /// The rustls connection: the negotiated version, cipher suite, ALPN
    /// protocol, SNI name.
    pub fn connection(&self) -> &rustls::ServerConnection {
        &self.conn
    }

    /// Moves the plaintext rustls decrypted (`len` bytes) into `plain`.
    fn take_plaintext(&mut self, len: usize, plain: &mut BytesMut) {
        if len == 0 {
            return;
        }
        let start = plain.len();
        plain.resize(start + len, 0);
        let mut filled = 0;
        while filled < len {
            match self.conn.reader().read(&mut plain[start + filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        plain.truncate(start + filled);
    }

    fn fail(&mut self, error: rustls::Error) -> LayerError {
        self.failed = true;
        LayerError::Tls(error)
    }
}

impl Layer for TlsLayer {
    fn receive(&mut self, input: &mut BytesMut, plain: &mut BytesMut) -> Result<(), LayerError> {
        if self.failed {
            input.clear();
            return Ok(());
        }
        while !input.is_empty() {
            let read = match self.conn.read_tls(&mut &input[..]) {
                Ok(read) => read,
                // A handshake message over rustls' 64 KiB bound.
                Err(error) => return Err(self.fail(rustls::Error::General(error.to_string()))),
            };
            if read == 0 {
                // After the client's close_notify nothing more counts.
                input.clear();
                break;
            }
            input.advance(read);
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => return Err(self.fail(error)),
            };
            self.take_plaintext(state.plaintext_bytes_to_read(), plain);
            if state.peer_has_closed() {
                self.peer_closed_due = true;
            }
        }
        Ok(())
    }

    fn send(&mut self, plain: &[u8], output: &mut BytesMut) {
        if self.closed || self.failed {
            return;
        }
        let mut rest = plain;
        while !rest.is_empty() {
            let written = self.conn.writer().write(rest).unwrap_or(0);
            self.poll_transmit(output);
            if written == 0 {
                // Only before the handshake ends, past rustls' buffer limit.
                log::debug!("TLS layer dropped {} bytes sent too early", rest.len());
                break;
            }
            rest = &rest[written..];
        }
    }

    fn poll_transmit(&mut self, output: &mut BytesMut) {
        let mut sink = BufMut::writer(&mut *output);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn poll_event(&mut self) -> Option<LayerEvent> {
        if !self.established_reported && self.is_established() {
            self.established_reported = true;
            return Some(LayerEvent::Established);
        }
        if self.peer_closed_due && !self.peer_closed_reported {
            self.peer_closed_reported = true;
            return Some(LayerEvent::PeerClosed { code: None });
        }
        None
    }

    fn close(&mut self, _reason: CloseReason) {
        if !self.closed && !self.failed {
            self.conn.send_close_notify();
        }
        self.closed = true;
    }

    fn is_established(&self) -> bool {
        !self.conn.is_handshaking() && !self.failed
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn is_finished(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests;
