//! The server's limits.

use std::time::Duration;

use crate::outbox::DEFAULT_QUEUE_BYTES;
use crate::protocol::DEFAULT_MAX_LINE;

/// The default maximum of open connections.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// The default time a connection has to send an acceptable name.
pub const DEFAULT_NAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits a server enforces. Start from [`ServerConfig::default`] and
/// change what you need:
///
/// ```
/// use std::time::Duration;
/// use chatcore::ServerConfig;
///
/// let config = ServerConfig::default()
///     .max_clients(100)
///     .name_timeout(Duration::from_secs(5));
/// assert_eq!(config.max_line, 4096);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Open connections at most, in the handshake or not (default 10000).
    pub max_clients: usize,
    /// The longest client line, in bytes, without its `\n` (default 4096).
    pub max_line: usize,
    /// Pending bytes a member's outbox holds before the member is
    /// disconnected as a slow consumer (default 1 MiB).
    pub queue_bytes: usize,
    /// How long a connection may take to send an acceptable name (default
    /// 30 s).
    pub name_timeout: Duration,
    /// How long shutdown waits for connections to write what they were
    /// sent before it closes them anyway (default 3 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_clients: DEFAULT_MAX_CLIENTS,
            max_line: DEFAULT_MAX_LINE,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            name_timeout: DEFAULT_NAME_TIMEOUT,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::max_clients`].
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n;
        self
    }

    /// Sets [`ServerConfig::max_line`].
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// Sets [`ServerConfig::queue_bytes`].
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// Sets [`ServerConfig::name_timeout`].
    pub fn name_timeout(mut self, timeout: Duration) -> Self {
        self.name_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}
