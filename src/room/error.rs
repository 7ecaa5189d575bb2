//! Why a room operation failed.

use super::MemberId;
use crate::protocol::NameError;

/// Why a join failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The name breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Another member has this name (without regard to case).
    #[error("name '{0}' is already taken")]
    NameTaken(String),
    /// The room is closed: the server is shutting down.
    #[error("the room is closed")]
    Closed,
    /// The newcomer's outbox did not take its welcome and join lines: they
    /// would overflow it (it is now aborted), or it is closed already.
    /// Nobody was told anything, and the name is still free.
    #[error("the new member's outbox did not take its welcome")]
    Undeliverable,
    /// The room could not decide (a room across servers that cannot reach
    /// the others in time); the name is not taken.
    #[error("the room is unavailable")]
    Unavailable,
}

/// Why a room operation other than a join failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The sender is not (or no longer) a member.
    #[error("member {0} is not in the room")]
    NotMember(MemberId),
    /// No member has the target name.
    #[error("user '{0}' not found")]
    UserNotFound(String),
    /// The room is closed: the server is shutting down.
    #[error("the room is closed")]
    Closed,
    /// The room could not take this many of the member's lines (a room
    /// across servers whose stream refused them): each gets the sender
    /// `Message not sent: the room is unavailable.`
    #[error("the room is unavailable: {0} lines not sent")]
    Unavailable(usize),
}
