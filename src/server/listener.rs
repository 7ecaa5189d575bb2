//! Extra listeners: more ports for the same room, each with the byte
//! layers its connections run (TLS, WebSocket, a layer of the user's).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::transport::layer::{Layer, LayerError};
use crate::transport::TcpTransport;

/// Makes the layers of one new connection.
pub type LayerFactory = Arc<dyn Fn() -> Result<Box<dyn Layer>, LayerError> + Send + Sync>;

/// A TCP listener and the layers each of its connections runs: the way to
/// serve the same room over TLS, WebSocket, or a transport of your own, on
/// the event loops as on threads ([`Server::add_listener`]).
///
/// Every listener of a server shares its room, its client limit (counted
/// over all listeners), its limits and its shutdown. Layers are made on the
/// event loop (or connection thread) that serves the connection, never on
/// the accept thread, and a connection's name timeout runs from the TCP
/// accept, so it also bounds a handshake that never finishes.
///
/// A listener of the user's, with a layer stack of its own (see
/// [`crate::transport::layer`] for how to write a layer):
///
/// ```no_run
/// use chatcore::server::Listener;
/// use chatcore::transport::layer::{Layer, Plain, Stack};
/// use chatcore::{Server, ServerConfig, TcpTransport};
///
/// let mut server = Server::new(TcpTransport::bind("127.0.0.1:0")?, ServerConfig::default());
/// // Lines through two identity layers: any `Layer` stacks the same way.
/// let listener = Listener::with_layers(TcpTransport::bind("127.0.0.1:0")?, "Stacked", || {
///     Ok(Box::new(Stack::new(Plain::new(), Plain::new())) as Box<dyn Layer>)
/// });
/// println!("{} listening on {}", listener.label(), listener.local_addr());
/// server.add_listener(listener);
/// server.run_event_loops(0)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Server::add_listener`]: crate::Server::add_listener
#[derive(Clone)]
pub struct Listener {
    transport: Arc<TcpTransport>,
    label: String,
    layers: Option<LayerFactory>,
}

impl Listener {
    /// Plain lines over TCP, like the server's own transport.
    pub fn tcp(transport: TcpTransport) -> Self {
        Listener {
            transport: Arc::new(transport),
            label: "TCP".into(),
            layers: None,
        }
    }

    /// Connections through the layers `make` builds for each of them;
    /// `label` names the listener in logs (`"TLS"`, `"WebSocket"`). A
    /// connection whose layers cannot be made is closed and logged.
    pub fn with_layers(
        transport: TcpTransport,
        label: impl Into<String>,
        make: impl Fn() -> Result<Box<dyn Layer>, LayerError> + Send + Sync + 'static,
    ) -> Self {
        Listener {
            transport: Arc::new(transport),
            label: label.into(),
            layers: Some(Arc::new(make)),
        }
    }

    /// Lines over TLS, with `config` (see
    /// [`TlsCertificate::server_config`](crate::transport::tls::TlsCertificate::server_config)).
    #[cfg(feature = "tls")]
    pub fn tls(transport: TcpTransport, config: Arc<rustls::ServerConfig>) -> Self {
        use crate::transport::tls::TlsLayer;
        Self::with_layers(transport, "TLS", move || {
            let tls = TlsLayer::new(config.clone()).map_err(LayerError::Tls)?;
            Ok(Box::new(tls) as Box<dyn Layer>)
        })
    }

    /// WebSocket, with the browser chat page on `GET /`.
    #[cfg(feature = "websocket")]
    pub fn ws(transport: TcpTransport) -> Self {
        use crate::transport::ws::WsLayer;
        Self::with_layers(transport, "WebSocket", || {
            Ok(Box::new(WsLayer::new()) as Box<dyn Layer>)
        })
    }

    /// WebSocket over TLS, with the browser chat page on `GET /`.
    #[cfg(all(feature = "tls", feature = "websocket"))]
    pub fn wss(transport: TcpTransport, config: Arc<rustls::ServerConfig>) -> Self {
        use crate::transport::layer::Stack;
        use crate::transport::tls::TlsLayer;
        use crate::transport::ws::WsLayer;
        Self::with_layers(transport, "Secure WebSocket", move || {
            let tls = TlsLayer::new(config.clone()).map_err(LayerError::Tls)?;
            Ok(Box::new(Stack::new(tls, WsLayer::new())) as Box<dyn Layer>)
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The listener's name in logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The TCP listener underneath.
    pub fn transport(&self) -> &TcpTransport {
        &self.transport
    }

    pub(crate) fn shared_transport(&self) -> &Arc<TcpTransport> {
        &self.transport
    }

    /// What makes the layers of a new connection: `None` for plain lines.
    pub(crate) fn factory(&self) -> Option<LayerFactory> {
        self.layers.clone()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("label", &self.label)
            .field("addr", &self.local_addr())
            .field("layers", &self.layers.is_some())
            .finish()
    }
}
