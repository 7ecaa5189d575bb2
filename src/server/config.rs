//! The server's limits.

use std::time::Duration;

use crate::outbox::DEFAULT_QUEUE_BYTES;
use crate::protocol::{DEFAULT_MAX_LINE, MAX_NAME_CHARS};

/// The default maximum of open connections.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// The default time a connection has to send an acceptable name.
pub const DEFAULT_NAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits a server enforces. Start from [`ServerConfig::default`] and
/// change what you need. Every limit takes its type's whole range: a
/// duration too long to add to the current time means "never". Only
/// combinations that cannot work are refused, by [`ServerConfig::validate`]
/// (which the server's `run` calls first):
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

    /// Checks that the limits can work together.
    ///
    /// ```
    /// use chatcore::ServerConfig;
    /// use chatcore::error::ConfigError;
    ///
    /// assert_eq!(ServerConfig::default().validate(), Ok(()));
    /// let tight = ServerConfig::default().max_line(4096).queue_bytes(8192);
    /// assert!(matches!(tight.validate(), Err(ConfigError::QueueTooSmall { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_line == 0 {
            return Err(ConfigError::MaxLineZero);
        }
        let needed = longest_line(self.max_line);
        if self.queue_bytes < needed {
            return Err(ConfigError::QueueTooSmall {
                queue_bytes: self.queue_bytes,
                max_line: self.max_line,
                needed,
            });
        }
        Ok(())
    }
}

/// The longest line the server may have to queue for one member, for a
/// given client line limit: `priv(<name>): <text>\n` with a name of 32
/// four-byte characters and a text of `max_line` bytes, each of them a `\r`
/// that goes out as the three bytes of U+FFFD. Saturates rather than
/// overflows.
fn longest_line(max_line: usize) -> usize {
    const FRAME: usize = "priv(): \n".len();
    max_line
        .saturating_mul(3)
        .saturating_add(MAX_NAME_CHARS * 4 + FRAME)
}

/// Why a [`ServerConfig`] cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A line limit of 0 bytes would refuse every name.
    #[error("invalid limits: max_line must be at least 1 byte")]
    MaxLineZero,
    /// A member's queue could not hold one of the longest lines the server
    /// may send it, so every member would be dropped on the first one.
    #[error(
        "invalid limits: queue_bytes is {queue_bytes}, but with max_line {max_line} \
         one line to a member can take {needed} bytes; raise queue_bytes or lower max_line"
    )]
    QueueTooSmall {
        /// The queue limit asked for.
        queue_bytes: usize,
        /// The line limit asked for.
        max_line: usize,
        /// The smallest queue limit that works with that line limit.
        needed: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_takes_its_whole_range_on_its_own() {
        let huge = ServerConfig::default()
            .max_clients(usize::MAX)
            .queue_bytes(usize::MAX)
            .name_timeout(Duration::MAX)
            .shutdown_grace(Duration::MAX);
        assert_eq!(huge.validate(), Ok(()));
        assert_eq!(huge.clone().max_line(usize::MAX).validate(), Ok(()));
        assert_eq!(ServerConfig::default().max_clients(0).validate(), Ok(()));
    }

    #[test]
    fn a_queue_must_hold_the_longest_line() {
        assert_eq!(longest_line(4096), 3 * 4096 + 128 + 9);
        let needed = longest_line(4096);
        let config = ServerConfig::default().max_line(4096);
        assert_eq!(config.clone().queue_bytes(needed).validate(), Ok(()));
        assert_eq!(
            config.clone().queue_bytes(needed - 1).validate(),
            Err(ConfigError::QueueTooSmall {
                queue_bytes: needed - 1,
                max_line: 4096,
                needed
            })
        );
        assert_eq!(
            ServerConfig::default().max_line(usize::MAX).validate(),
            Err(ConfigError::QueueTooSmall {
                queue_bytes: DEFAULT_QUEUE_BYTES,
                max_line: usize::MAX,
                needed: usize::MAX
            })
        );
        assert_eq!(
            ServerConfig::default().max_line(0).validate(),
            Err(ConfigError::MaxLineZero)
        );
    }
}
