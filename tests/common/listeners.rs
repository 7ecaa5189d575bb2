//! [`TestServer::with_transports`]: one [`Server`] with a listener per
//! transport of [`TRANSPORTS`] ([`Server::add_listener`]), all in its room,
//! under its one client limit and its one shutdown, run on `io` like any
//! other test server.

#[cfg(feature = "tls")]
use std::sync::{Arc, OnceLock};

use chatcore::server::Listener;
#[cfg(feature = "tls")]
use chatcore::transport::tls::TlsCertificate;
use chatcore::{Server, ServerConfig};

use super::{bind_tcp, Io, Kind, TestServer, Trust, TRANSPORTS};

impl TestServer {
    /// A server with a listener for every transport of [`TRANSPORTS`] on
    /// 127.0.0.1 port 0, all in one room with `config`, run on `io`. TLS
    /// uses a self-signed certificate that [`TestServer::trust`] pins.
    pub fn with_transports(io: Io, config: ServerConfig) -> Self {
        let mut server = Server::new(bind_tcp(), config);
        let mut listeners = Vec::new();
        let mut trust = Trust::default();
        for &kind in &TRANSPORTS[1..] {
            let listener = listener_for(kind, &mut trust);
            listeners.push((kind, listener.local_addr()));
            server.add_listener(listener);
        }
        let mut test_server = TestServer::run(server, io);
        test_server.listeners.extend(listeners);
        test_server.trust = trust;
        test_server
    }
}

/// A listener for `kind` on 127.0.0.1 port 0; over TLS, `trust` is set to
/// pin its certificate.
fn listener_for(kind: Kind, trust: &mut Trust) -> Listener {
    match kind {
        #[cfg(feature = "tls")]
        Kind::Tls => {
            let (tls, pinned) = tls();
            *trust = pinned;
            Listener::tls(bind_tcp(), tls)
        }
        #[cfg(feature = "websocket")]
        Kind::Ws => Listener::ws(bind_tcp()),
        #[cfg(all(feature = "tls", feature = "websocket"))]
        Kind::Wss => {
            let (tls, pinned) = tls();
            *trust = pinned;
            Listener::wss(bind_tcp(), tls)
        }
        _ => panic!("this build has no listener for {kind} (trusting {trust:?})"),
    }
}

/// The TLS configuration of every test server, and how its clients trust
/// it: one self-signed certificate for the whole test binary (making one
/// per server would only cost time).
#[cfg(feature = "tls")]
fn tls() -> (Arc<rustls::ServerConfig>, Trust) {
    static TLS: OnceLock<(Arc<rustls::ServerConfig>, Trust)> = OnceLock::new();
    TLS.get_or_init(|| {
        let certificate = TlsCertificate::self_signed().expect("a self-signed certificate");
        let config = certificate.server_config().expect("a TLS server config");
        let trust = Trust::pinned(certificate.certificate_der().clone());
        (config, trust)
    })
    .clone()
}
