//! Errors, one enum per layer, joined into [`Error`].
//!
//! The protocol's [`NameError`], the room's [`JoinError`] and [`RoomError`],
//! and the server's [`ServerError`] each say what went wrong in their layer;
//! [`Error`] wraps any of them for code that spans layers.

use std::io;

pub use crate::protocol::NameError;
pub use crate::room::{JoinError, RoomError};
pub use crate::server::ConfigError;

/// Why a server stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The transport failed to accept in a way that retrying cannot mend.
    #[error("accepting connections failed")]
    Accept(#[source] io::Error),
    /// An event loop could not be started.
    #[error("starting an event loop failed")]
    EventLoop(#[source] io::Error),
    /// The limits cannot work together; nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every event loop has exited (their epoll failed; each logged why),
    /// so no connection could be served any more.
    #[error("no event loop is running")]
    NoEventLoop,
}

/// Any error of the crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name broke the protocol's rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A join failed.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A room operation failed.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// I/O failed (binding a transport, say).
    #[error("I/O error")]
    Io(#[from] io::Error),
}
