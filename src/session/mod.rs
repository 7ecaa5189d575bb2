//! One connection's protocol logic, with no I/O.
//!
//! A [`Session`] is fed the bytes a driver read and the events it saw (input
//! ended, the handshake deadline passed). It runs the handshake, parses
//! commands, calls the room, and pushes its own replies into the connection's
//! [`Outbox`]. It never touches a socket, so the thread-per-connection driver,
//! an event loop and a unit test all run the same code.
//!
//! # A room that answers later
//!
//! With a [`RoomBackend`](crate::room::RoomBackend) (a room across
//! servers), a name claim may need a round trip. The session then waits
//! ([`SessionState::Joining`]): it decodes nothing more, and
//! [`Session::receive`] leaves what it is given in the buffer. The driver
//! keeps those bytes and reads no more from the client meanwhile (what the
//! client sends waits in the kernel, bounded by TCP's window), so a client
//! that floods during its claim holds at most one read's worth of memory.
//! When the answer comes, the back end wakes the connection's writer; the
//! driver then calls [`Session::resume`] with the bytes it kept, and reads
//! again.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::outbox::{Outbox, Push};
use crate::protocol::{is_blank, Command, Frame, LineCodec, Reply};
use crate::room::{Claim, JoinError, JoinTicket, MemberId, Room, RoomError};
use said::Said;

mod said;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Waiting for an acceptable name.
    Handshake,
    /// A name was asked for and the room has not answered yet: input waits
    /// (see [a room that answers later](self#a-room-that-answers-later)).
    Joining,
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
/// let mut session = Session::new(room, outbox.clone(), 4096);
/// session.receive(&mut BytesMut::from(&b"ana\r\nhello\n"[..]));
/// assert_eq!(
///     outbox.drain_bytes(),
///     b"NAME\nWelcome to the chat, ana!\nana has joined the chat.\nana: hello\n"
/// );
/// ```
#[derive(Debug)]
pub struct Session {
    room: Room,
    outbox: Arc<Outbox>,
    codec: LineCodec,
    state: SessionState,
    /// The bytes each public line costs beyond its text once rendered
    /// (`<name>: ` and `\n`); known once a name is asked for.
    line_overhead: usize,
    /// The claim whose answer the session waits for, while `Joining`.
    ticket: Option<Arc<JoinTicket>>,
}

impl Session {
    /// Starts a session: sends `NAME` and waits for a name. `room` is an
    /// `Arc<ChatRoom>` (the in-process room) or any [`Room`].
    pub fn new(room: impl Into<Room>, outbox: Arc<Outbox>, max_line: usize) -> Self {
        let mut session = Session {
            room: room.into(),
            outbox,
            codec: LineCodec::new(max_line),
            state: SessionState::Handshake,
            line_overhead: 0,
            ticket: None,
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

    /// Whether the session waits for the room's answer to its name: the
    /// driver reads nothing meanwhile, and calls [`Session::resume`] when
    /// the connection's writer is woken.
    pub fn is_waiting(&self) -> bool {
        self.state == SessionState::Joining
    }

    /// Waits (up to `timeout`) for the room's answer to the name, for a
    /// driver with a thread of its own; returns whether it has come (or the
    /// session is not waiting). [`Session::resume`] then takes it.
    pub fn wait_answer(&self, timeout: Duration) -> bool {
        match &self.ticket {
            Some(ticket) if self.is_waiting() => ticket.wait(timeout) || !self.outbox.is_open(),
            _ => true,
        }
    }

    /// If the session was waiting for the room's answer and it has come (or
    /// the connection is closing): takes it and handles the input held
    /// meanwhile (`held`: what the driver kept, consumed as by
    /// [`Session::receive`]). Returns whether it did; `false` means still
    /// waiting, or nothing to resume.
    pub fn resume(&mut self, held: &mut BytesMut) -> bool {
        if !self.is_waiting() || !self.take_answer() {
            return false;
        }
        self.receive(held);
        true
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
    /// [`ChatRoom::broadcast_all`](crate::ChatRoom::broadcast_all)); any
    /// other line first sends them.
    pub fn receive(&mut self, buf: &mut BytesMut) -> SessionState {
        let mut said = Said::new(self.outbox.limit(), self.line_overhead);
        while !self.check_outbox() {
            if self.is_waiting() && !self.take_answer() {
                // Held: the bytes stay in `buf` until the answer comes.
                break;
            }
            let Some(frame) = self.codec.decode(buf) else {
                break;
            };
            match frame {
                Frame::Line(line) => match self.state {
                    SessionState::Joined(id) => self.handle_line(id, line, &mut said),
                    SessionState::Handshake => self.handle_name(line),
                    SessionState::Joining | SessionState::Closed => {}
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
    /// (or for the room's answer to one) gets `Timed out waiting for a
    /// name.` and is closed; otherwise nothing happens.
    pub fn name_timed_out(&mut self) {
        if self.is_waiting() {
            // The answer may have come just in time.
            self.take_answer();
        }
        match self.state {
            SessionState::Handshake => {
                self.outbox.close_with(&Reply::NameTimeout.encode());
                self.state = SessionState::Closed;
            }
            SessionState::Joining => {
                self.outbox.close_with(&Reply::NameTimeout.encode());
                // Gives the claim up.
                self.end();
            }
            _ => {}
        }
    }

    /// Takes the room's answer to the name, if it has come (`false`: still
    /// waiting).
    fn take_answer(&mut self) -> bool {
        let Some(ticket) = &self.ticket else {
            return true;
        };
        let Some(answer) = ticket.answer() else {
            if self.outbox.is_open() {
                return false;
            }
            // Closing (shutdown, or an overflow): no answer is awaited.
            self.end();
            return true;
        };
        let member = ticket.member();
        self.ticket = None;
        self.state = SessionState::Handshake;
        match answer {
            Ok(()) => self.joined(member),
            Err(error) => self.join_failed(error),
        }
        true
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

    /// Leaves the room if joined (or gives up a claim under way), and
    /// closes the outbox (at once, or once the room has taken the leave).
    fn end(&mut self) {
        match self.state {
            SessionState::Joined(id) => self.room.leave(id, &self.outbox),
            SessionState::Joining => match self.ticket.take() {
                Some(ticket) => self.room.leave(ticket.member(), &self.outbox),
                None => self.outbox.close(),
            },
            _ => self.outbox.close(),
        }
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
        self.reply(reply.encode());
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
        self.line_overhead = name.len() + 3;
        match self.room.claim(name, &self.outbox) {
            Claim::Joined(id) => self.joined(id),
            Claim::Refused(error) => self.join_failed(error),
            Claim::Pending(ticket) => {
                self.ticket = Some(ticket);
                self.state = SessionState::Joining;
                // It may have been answered already.
                self.take_answer();
            }
        }
    }

    fn joined(&mut self, id: MemberId) {
        log::info!("member {id} joined");
        self.state = SessionState::Joined(id);
    }

    fn join_failed(&mut self, error: JoinError) {
        match error {
            JoinError::InvalidName(_) => {
                self.send(Reply::InvalidName.encode());
                self.send(Reply::Name.encode());
            }
            JoinError::NameTaken(name) => {
                self.send(Reply::NameTaken(&name).encode());
                self.send(Reply::Name.encode());
            }
            JoinError::Unavailable => {
                self.send(Reply::Unavailable.encode());
                self.send(Reply::Name.encode());
            }
            JoinError::Closed => self.shut_down(),
            JoinError::Undeliverable => {
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
        let result = self.room.say(id, &said.texts);
        said.clear();
        self.settle(result);
    }

    /// Runs a member's command other than public text.
    fn handle_command(&mut self, id: MemberId, command: Command<'_>) {
        let result = match command {
            Command::Say(text) => self.room.say(id, &[text]),
            Command::Whisper { target, text } => self.room.whisper(id, target, text),
            Command::WhisperUsage => {
                self.reply(Reply::WhisperUsage.encode());
                Ok(())
            }
            Command::List => match self.room.list(id, &self.outbox) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    log::info!("member {id} dropped: its outbox overflowed");
                    self.end();
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Command::Help => {
                self.reply(Reply::Help.encode());
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
            Err(RoomError::Unavailable(lines)) => {
                // Said at once: the room did not take the lines, so there
                // is nothing of theirs for the reply to wait for.
                for _ in 0..lines {
                    self.send(Reply::Unavailable.encode());
                }
            }
        }
    }

    /// Pushes one of this session's own replies to what the client sent:
    /// for a member of a room that answers later, through the room, so that
    /// it comes after the member's earlier lines.
    fn reply(&mut self, line: Bytes) {
        match (self.state, self.room.as_backend()) {
            (SessionState::Joined(id), Some(backend)) => {
                let result = backend.reply(id, &self.outbox, line);
                self.settle(result);
            }
            _ => self.send(line),
        }
    }

    /// Pushes one of this session's own lines. If it overflows the outbox,
    /// the connection is over.
    fn send(&mut self, line: Bytes) {
        if self.outbox.push(&line) == Push::Overflow {
            log::info!("connection dropped: its outbox overflowed");
            self.end();
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod waiting_tests;
