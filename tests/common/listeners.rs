//! The TLS, WS and WSS listeners of [`TestServer::with_transports`].
//!
//! Today the server's drivers serve plain TCP only, so each extra listener
//! is a server of its own on the threaded driver, over the test-only
//! blocking transport of `layered.rs`, sharing the TCP server's room. What
//! that harness cannot do (until the real listeners replace it):
//!
//! - the client limit counts each listener on its own, not all together;
//! - the close code is guessed from the last line sent: 1001 after
//!   `Server is shutting down.`, 1013 after `Server is full.`, 1008 after
//!   `Timed out waiting for a name.`, else 1000 (so a cut slow consumer gets
//!   1000, not 1008);
//! - a refusal before the TLS or WebSocket handshake is done (`Server is
//!   full.`, 1013) is lost: the harness closes the connection before the
//!   handshake could finish, so tests of it need the real listeners;
//! - only the TCP listener follows `io`: the others always run on threads.
//!
//! # Plugging in the real listeners
//!
//! Once `Server` itself listens on TLS, WS and WSS, replace the body of
//! [`TestServer::with_transports`]: build one server with a listener per
//! transport on 127.0.0.1 port 0 (a self-signed certificate), run it with
//! `io` as [`TestServer::with_config`] does, and fill `listeners` with
//! each bound address and `trust` with [`Trust::pinned`] of the server's
//! certificate. Tests only see [`TestServer::addr_for`],
//! [`TestServer::connect_over`], [`TestServer::join_over`] and
//! [`TestServer::trust`], so none of them changes.

#[cfg(any(feature = "tls", feature = "websocket"))]
use chatcore::transport::layer::Layer;
#[cfg(all(feature = "tls", feature = "websocket"))]
use chatcore::transport::layer::Stack;
#[cfg(feature = "tls")]
use chatcore::transport::tls::{TlsCertificate, TlsLayer};
#[cfg(feature = "websocket")]
use chatcore::transport::ws::WsLayer;
use chatcore::{Server, ServerConfig};

use super::layered::{LayeredTransport, MakeLayer};
use super::{Io, Kind, TestServer, TRANSPORTS};

impl TestServer {
    /// A server with a listener for every transport of [`TRANSPORTS`] (TCP
    /// on `io`; see the module docs), all in one room, each with `config`.
    /// TLS uses a self-signed certificate that [`TestServer::trust`] pins.
    pub fn with_transports(io: Io, config: ServerConfig) -> Self {
        let mut server = TestServer::with_config(io, config.clone());
        let layers = Layers::new(&mut server);
        for &kind in &TRANSPORTS[1..] {
            server.add_layered(kind, layers.make(kind), config.clone());
        }
        server
    }

    /// Adds a `kind` listener: a threaded server over [`LayeredTransport`]
    /// with the layers `make` builds, in this server's room.
    fn add_layered(&mut self, kind: Kind, make: MakeLayer, config: ServerConfig) {
        let transport = LayeredTransport::bind(make).expect("bind 127.0.0.1:0");
        self.listeners.push((kind, transport.local_addr()));
        let server = Server::with_room(transport, config, self.room.clone());
        self.run_on_a_thread(server, |server| server.run());
    }
}

/// What the listeners' layers need: the TLS configuration, shared.
struct Layers {
    #[cfg(feature = "tls")]
    tls: std::sync::Arc<rustls::ServerConfig>,
}

impl Layers {
    /// Makes the server's self-signed certificate, which `server`'s TLS
    /// clients pin.
    fn new(server: &mut TestServer) -> Self {
        #[cfg(feature = "tls")]
        {
            let certificate = TlsCertificate::self_signed().expect("a self-signed certificate");
            server.trust = super::Trust::pinned(certificate.certificate_der().clone());
            let tls = certificate.server_config().expect("a TLS server config");
            Layers { tls }
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = server;
            Layers {}
        }
    }

    /// Makes the layers of each connection of a `kind` listener.
    fn make(&self, kind: Kind) -> MakeLayer {
        match kind {
            #[cfg(feature = "tls")]
            Kind::Tls => {
                let tls = self.tls.clone();
                std::sync::Arc::new(move || -> Box<dyn Layer> {
                    Box::new(TlsLayer::new(tls.clone()).expect("a TLS layer"))
                })
            }
            #[cfg(feature = "websocket")]
            Kind::Ws => std::sync::Arc::new(|| -> Box<dyn Layer> { Box::new(WsLayer::new()) }),
            #[cfg(all(feature = "tls", feature = "websocket"))]
            Kind::Wss => {
                let tls = self.tls.clone();
                std::sync::Arc::new(move || -> Box<dyn Layer> {
                    let tls = TlsLayer::new(tls.clone()).expect("a TLS layer");
                    Box::new(Stack::new(tls, WsLayer::new()))
                })
            }
            _ => panic!("this build has no layers for {kind}"),
        }
    }
}
