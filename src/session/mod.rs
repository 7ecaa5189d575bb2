//! One connection's protocol logic, with no I/O.
//!
//! A [`Session`] is fed the bytes a driver read and the events it saw (input
//! ended, the handshake deadline passed). It runs the handshake, parses
//! commands, calls the room, and pushes its own replies into the connection's
//! [`Outbox`]. It never touches a socket, so the thread-per-connection driver,
//! an event loop and a unit test all run the same code.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::outbox::{Outbox, Push};
use crate::protocol::{is_blank, Command, Frame, LineCodec, Reply};
use crate::room::{ChatRoom, JoinError, MemberId, RoomError};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Waiting for an acceptable name.
    Handshake,
    /// A member of the room.
    Joined(MemberId),
    /// Done: read no more input. What is queued in the outbox is still to be
    /// written (unless the outbox was aborted), then the connection closes.
    Closed,
}

/// The protocol state machine of one connection.
///
/// ```
/// use std::sync::Arc;
/// use bytes::BytesMut;
/// use chatcore::{ChatRoom, Outbox, Session};
///
/// let room = Arc::new(ChatRoom::new());
/// let outbox = Arc::new(Outbox::new(1 << 20));
/// let mut session = Session::new(room.clone(), outbox.clone(), 4096);
/// session.receive(&mut BytesMut::from(&b"ana\r\nhello\n"[..]));
/// assert_eq!(
///     outbox.drain_bytes(),
///     b"NAME\nWelcome to the chat, ana!\nana has joined the chat.\nana: hello\n"
/// );
/// ```
#[derive(Debug)]
pub struct Session {
    room: Arc<ChatRoom>,
    outbox: Arc<Outbox>,
    codec: LineCodec,
    state: SessionState,
    /// The bytes each public line costs beyond its text once rendered
    /// (`<name>: ` and `\n`); known once joined.
    line_overhead: usize,
}

impl Session {
    /// Starts a session: sends `NAME` and waits for a name.
    pub fn new(room: Arc<ChatRoom>, outbox: Arc<Outbox>, max_line: usize) -> Self {
        let mut session = Session {
            room,
            outbox,
            codec: LineCodec::new(max_line),
            state: SessionState::Handshake,
            line_overhead: 0,
        };
        session.send(Reply::Name.encode());
        session
    }

    /// Where the session stands.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether the session reads no more input.
    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    /// The member this session joined as, if it has.
    pub fn member(&self) -> Option<MemberId> {
        match self.state {
            SessionState::Joined(id) => Some(id),
            _ => None,
        }
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Handles every complete line in `buf` (consuming it; an unfinished
    /// line stays). Returns the state afterwards: once `Closed`, the driver
    /// reads no more.
    ///
    /// Consecutive public lines go to the room together, as one event (see
    /// [`ChatRoom::broadcast_all`]); any other line first sends them.
    pub fn receive(&mut self, buf: &mut BytesMut) -> SessionState {
        let mut said = Said::new(self.outbox.limit(), self.line_overhead);
        while !self.check_outbox() {
            let Some(frame) = self.codec.decode(buf) else {
                break;
            };
            match frame {
                Frame::Line(line) => match self.state {
                    SessionState::Joined(id) => self.handle_line(id, line, &mut said),
                    SessionState::Handshake => self.handle_name(line),
                    SessionState::Closed => {}
                },
                Frame::TooLong => {
                    self.say(&mut said);
                    self.refuse(Reply::LineTooLong(self.codec.max_line()));
                }
                Frame::InvalidUtf8 => {
                    self.say(&mut said);
                    self.refuse(Reply::InvalidUtf8);
                }
            }
        }
        self.say(&mut said);
        self.codec.consume(buf);
        if self.is_closed() {
            buf.clear();
        }
        self.state
    }

    /// The client's input ended (end of stream, a reset, a read error): a
    /// member leaves and everyone else is told; a connection still in the
    /// handshake is dropped silently. Queued lines are still written.
    pub fn input_ended(&mut self) {
        self.end();
    }

    /// The handshake deadline passed. A session still waiting for a name
    /// gets `Timed out waiting for a name.` and is closed; otherwise nothing
    /// happens.
    pub fn name_timed_out(&mut self) {
        if self.state == SessionState::Handshake {
            self.outbox.close_with(&Reply::NameTimeout.encode());
            self.state = SessionState::Closed;
        }
    }

    /// Whether the outbox still takes lines; if not (the server is shutting
    /// down, or this member overflowed), the session ends. Returns whether
    /// the session is closed.
    fn check_outbox(&mut self) -> bool {
        if !self.is_closed() && !self.outbox.is_open() {
            self.end();
        }
        self.is_closed()
    }

    /// Leaves the room if joined, and closes the outbox.
    fn end(&mut self) {
        if let SessionState::Joined(id) = self.state {
            self.room.leave(id);
        }
        self.outbox.close();
        self.state = SessionState::Closed;
    }

    /// Handles a member's line: public text joins the batch in `said`;
    /// anything else first sends the batch.
    fn handle_line<'b>(&mut self, id: MemberId, line: &'b str, said: &mut Said<'b>) {
        if is_blank(line) {
            return;
        }
        match Command::parse(line) {
            Command::Say(text) => {
                if !said.fits(text) {
                    self.say(said);
                }
                said.add(text);
            }
            command => {
                self.say(said);
                self.handle_command(id, command);
            }
        }
    }

    /// Answers a line that could not be read; in the handshake, asks for the
    /// name again.
    fn refuse(&mut self, reply: Reply<'_>) {
        self.send(reply.encode());
        if self.state == SessionState::Handshake {
            self.send(Reply::Name.encode());
        }
    }

    fn handle_name(&mut self, name: &str) {
        if is_blank(name) {
            return;
        }
        if name == "QUIT" {
            self.end();
            return;
        }
        match self.room.join(name, self.outbox.clone()) {
            Ok(id) => {
                log::info!("member {id} joined");
                self.state = SessionState::Joined(id);
                self.line_overhead = name.len() + 3;
            }
            Err(JoinError::InvalidName(_)) => {
                self.send(Reply::InvalidName.encode());
                self.send(Reply::Name.encode());
            }
            Err(JoinError::NameTaken(_)) => {
                self.send(Reply::NameTaken(name).encode());
                self.send(Reply::Name.encode());
            }
            Err(JoinError::Closed) => self.shut_down(),
            Err(JoinError::Undeliverable) => {
                log::info!("connection dropped: its welcome overflowed its outbox");
                self.end();
            }
        }
    }

    /// The room is closed (the server is shutting down): `Server is shutting
    /// down.` is the last line, even for a connection that the shutdown's
    /// sweep of connections has not reached yet (it will find the outbox
    /// closed and add nothing).
    fn shut_down(&mut self) {
        self.outbox.close_with(&Reply::ShuttingDown.encode());
        self.state = SessionState::Closed;
    }

    /// Sends the public lines gathered so far, if any.
    fn say(&mut self, said: &mut Said<'_>) {
        let SessionState::Joined(id) = self.state else {
            said.clear();
            return;
        };
        if said.texts.is_empty() {
            return;
        }
        let result = self.room.broadcast_all(id, &said.texts);
        said.clear();
        self.settle(result);
    }

    /// Runs a member's command other than public text.
    fn handle_command(&mut self, id: MemberId, command: Command<'_>) {
        let result = match command {
            Command::Say(text) => self.room.broadcast(id, text),
            Command::Whisper { target, text } => self.room.whisper(id, target, text),
            Command::WhisperUsage => {
                self.send(Reply::WhisperUsage.encode());
                Ok(())
            }
            Command::List => {
                // Its size is the room's, not the member's: it does not
                // count against the member's limit (see `Outbox::push_reply`).
                if self.outbox.push_reply(&self.room.user_list()) == Push::Overflow {
                    log::info!("member {id} dropped: its outbox overflowed");
                    self.end();
                }
                Ok(())
            }
            Command::Help => {
                self.send(Reply::Help.encode());
                Ok(())
            }
            Command::Quit => {
                log::info!("member {id} quit");
                self.end();
                Ok(())
            }
        };
        self.settle(result);
    }

    /// Answers what a room operation said.
    fn settle(&mut self, result: Result<(), RoomError>) {
        match result {
            Ok(()) => {}
            Err(RoomError::UserNotFound(target)) => {
                self.send(Reply::UserNotFound(&target).encode());
            }
            Err(RoomError::Closed) => self.shut_down(),
            Err(RoomError::NotMember(_)) => self.end(),
        }
    }

    /// Pushes one of this session's own replies. If it overflows the outbox,
    /// the connection is over.
    fn send(&mut self, line: Bytes) {
        if self.outbox.push(&line) == Push::Overflow {
            log::info!("connection dropped: its outbox overflowed");
            self.end();
        }
    }
}

/// Public lines read together, waiting to go to the room as one event.
struct Said<'a> {
    texts: Vec<&'a str>,
    /// The rendered size of the lines in `texts`.
    bytes: usize,
    /// The most rendered bytes of one event (unless a single line is more).
    max_bytes: usize,
    /// What rendering adds to each line's text.
    overhead: usize,
}

impl<'a> Said<'a> {
    /// At most this many bytes go to the room in one event, so that one
    /// sender's burst holds the room's lock only briefly.
    const MAX_BYTES: usize = 16 * 1024;

    /// A batch for an outbox holding `queue_limit` bytes: one event takes at
    /// most a quarter of it (rendered), unless a single line is more. A
    /// member whose writer keeps its queue under three quarters full takes
    /// every batch whole, as it would take the same lines one by one; a
    /// batch larger than the queue would overflow every member at once.
    fn new(queue_limit: usize, overhead: usize) -> Self {
        Said {
            texts: Vec::new(),
            bytes: 0,
            max_bytes: Self::MAX_BYTES.min(queue_limit / 4),
            overhead,
        }
    }

    /// Whether `text` can join the batch (an empty batch takes any line).
    fn fits(&self, text: &str) -> bool {
        self.texts.is_empty() || self.bytes + self.overhead + text.len() <= self.max_bytes
    }

    fn add(&mut self, text: &'a str) {
        self.texts.push(text);
        self.bytes += self.overhead + text.len();
    }

    fn clear(&mut self) {
        self.texts.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests;
