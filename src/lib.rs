//! `chatcore`: the pieces of a line-based chat server.
//!
//! A [`ChatRoom`] keeps the members and their one order of events; a line
//! protocol turns bytes into [`Command`](protocol::Command)s and typed
//! [`Reply`](protocol::Reply)s into bytes; a [`Session`] runs one
//! connection's handshake and commands; a [`Transport`] moves bytes and
//! connections; a [`Server`] wires a transport into a room. Room, protocol
//! and session know nothing of sockets, so room semantics can be tested with
//! no network at all:
//!
//! ```
//! use std::sync::Arc;
//! use chatcore::{ChatRoom, Outbox};
//!
//! let room = ChatRoom::new();
//! let outbox = || Arc::new(Outbox::new(1 << 20));
//! let (ana, bob, cy) = (outbox(), outbox(), outbox());
//! let ana_id = room.join("Ana", ana.clone())?;
//! let bob_id = room.join("bob", bob.clone())?;
//! room.join("cy", cy.clone())?;
//! for o in [&ana, &bob, &cy] {
//!     o.drain_bytes(); // welcomes and join notices
//! }
//!
//! room.whisper(ana_id, "BOB", "psst")?;
//! room.broadcast(bob_id, "hi all")?;
//! room.leave(bob_id);
//!
//! assert_eq!(ana.drain_bytes(), b"bob: hi all\nbob has left the chat.\n");
//! assert_eq!(bob.drain_bytes(), b"priv(Ana): psst\nbob: hi all\n");
//! assert_eq!(cy.drain_bytes(), b"bob: hi all\nbob has left the chat.\n");
//! # Ok::<(), chatcore::Error>(())
//! ```
//!
//! # Layout
//!
//! - [`protocol`]: framing ([`LineCodec`](protocol::LineCodec)), commands,
//!   names, and every server line ([`Reply`](protocol::Reply)).
//! - [`room`]: [`ChatRoom`] and [`MemberId`]; [`Room`](room::Room), what a
//!   session speaks to: the in-process room, or a
//!   [`RoomBackend`](room::RoomBackend) whose answers may come later.
//! - [`outbox`]: a member's bounded queue of lines ([`Outbox`]), and the
//!   room log it reads: each public line is kept once for the whole room,
//!   and a room's memory is bounded by the members' limit, not by their
//!   number.
//! - [`session`]: the sans-I/O per-connection state machine ([`Session`]).
//! - [`transport`]: the [`Transport`] trait, [`TcpTransport`] and
//!   [`MemoryTransport`]; sans-I/O byte layers that stack
//!   ([`transport::layer`], with how to write one), TLS (feature `tls`) and
//!   WebSocket with the browser page (feature `websocket`).
//! - [`server`]: [`Server`], [`ServerConfig`], the [`Shutdown`] handle, and
//!   [`Listener`](server::Listener)s: more ports (TLS, WebSocket, a layer
//!   stack of yours) for the same room, on the same event loops.
//! - [`error`]: one error enum per layer, joined in [`Error`].
//! - `cluster` (with the `nats` feature): one room across several servers,
//!   through NATS JetStream; `cluster::ClusterRoom` makes a server one node
//!   of it.
//!
//! Dependencies point one way: `protocol` and `outbox` need nothing; `room`
//! needs both; `session` needs `room`; `transport` needs none of them;
//! `server` needs them all.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

#[cfg(feature = "nats")]
pub mod cluster;
pub mod error;
pub mod outbox;
pub mod protocol;
pub mod room;
pub mod server;
pub mod session;
pub mod transport;

pub use error::{Error, ServerError};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use outbox::{Outbox, OutboxState, Push, Wake};
pub use room::{ChatRoom, JoinError, MemberId, RoomError};
pub use server::{Server, ServerConfig, Shutdown};
pub use session::{Session, SessionState};
pub use transport::{MemoryTransport, TcpTransport, Transport};
