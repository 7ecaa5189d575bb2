//! The line protocol, with no I/O: bytes to lines ([`LineCodec`]), lines to
//! commands ([`Command`]), member names ([`validate_name`]), and typed server
//! lines to bytes ([`Reply`]).
//!
//! The wire contract is `docs/PROTOCOL.md` (version 1.1) in the repository;
//! the README summarises it.

mod codec;
mod command;
mod name;
mod reply;

pub use codec::{Frame, LineCodec, DEFAULT_MAX_LINE};
pub use command::{is_blank, Command};
pub use name::{name_key, validate_name, NameError, MAX_NAME_CHARS, RESERVED_NAME_CHARS};
pub use reply::Reply;
