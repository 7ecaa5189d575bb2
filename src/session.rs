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
mod tests {
    use super::*;
    use crate::outbox::OutboxState;

    struct Client {
        session: Session,
        outbox: Arc<Outbox>,
        reader: Option<Arc<KeepUp>>,
    }

    /// Takes everything from its outbox whenever it is woken.
    #[derive(Default)]
    struct KeepUp {
        outbox: parking_lot::Mutex<std::sync::Weak<Outbox>>,
        taken: parking_lot::Mutex<Vec<u8>>,
    }

    impl crate::outbox::Wake for KeepUp {
        fn wake(&self) {
            if let Some(outbox) = self.outbox.lock().upgrade() {
                let (bytes, _) = outbox.take();
                self.taken.lock().extend_from_slice(&bytes);
            }
        }
    }

    impl Client {
        fn new(room: &Arc<ChatRoom>) -> Self {
            Self::with_limits(room, 64, 1 << 20)
        }

        fn with_limits(room: &Arc<ChatRoom>, max_line: usize, queue: usize) -> Self {
            let outbox = Arc::new(Outbox::new(queue));
            let session = Session::new(room.clone(), outbox.clone(), max_line);
            Client {
                session,
                outbox,
                reader: None,
            }
        }

        fn send(&mut self, bytes: &[u8]) -> SessionState {
            self.session.receive(&mut BytesMut::from(bytes))
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.outbox.drain_bytes())
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect()
        }

        /// A client whose writer takes every line as soon as it is queued:
        /// a reader that keeps up, and nothing more.
        fn keeping_up(room: &Arc<ChatRoom>, queue: usize) -> Self {
            let reader = Arc::new(KeepUp::default());
            let outbox = Arc::new(Outbox::with_waker(queue, reader.clone()));
            *reader.outbox.lock() = Arc::downgrade(&outbox);
            let session = Session::new(room.clone(), outbox.clone(), 4096);
            Client {
                session,
                outbox,
                reader: Some(reader),
            }
        }

        /// What a keeping-up reader has taken so far.
        fn taken(&self) -> Vec<String> {
            let reader = self.reader.as_ref().expect("a keeping-up client");
            let bytes = std::mem::take(&mut *reader.taken.lock());
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn joined(room: &Arc<ChatRoom>, name: &str) -> Self {
            let mut client = Client::new(room);
            client.send(format!("{name}\n").as_bytes());
            client.lines();
            client
        }
    }

    #[test]
    fn handshake_refuses_bad_and_taken_names_then_accepts() {
        let room = Arc::new(ChatRoom::new());
        let _ana = Client::joined(&room, "Ana");
        let mut c = Client::new(&room);
        c.send(b"\n  \t\nbad name\nANA\n\\x\nbob\n");
        assert_eq!(
            c.lines(),
            [
                "NAME",
                "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.",
                "NAME",
                "Name 'ANA' is already taken.",
                "NAME",
                "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.",
                "NAME",
                "Welcome to the chat, bob!",
                "bob has joined the chat.",
            ]
        );
    }

    #[test]
    fn framing_errors_in_the_handshake_ask_for_the_name_again() {
        let room = Arc::new(ChatRoom::new());
        let mut c = Client::with_limits(&room, 4, 1 << 20);
        c.send(b"toolong\n\xff\n");
        assert_eq!(
            c.lines(),
            [
                "NAME",
                "Line too long (max 4 bytes).",
                "NAME",
                "Message is not valid UTF-8.",
                "NAME"
            ]
        );
    }

    #[test]
    fn quit_as_the_name_closes_silently() {
        let room = Arc::new(ChatRoom::new());
        let mut watcher = Client::joined(&room, "w");
        let mut c = Client::new(&room);
        assert_eq!(c.send(b"QUIT\nlater\n"), SessionState::Closed);
        assert_eq!(c.lines(), ["NAME"]);
        assert_eq!(c.outbox.state(), OutboxState::Closing);
        assert!(watcher.lines().is_empty());
        watcher.send(b"\\list\n");
        assert_eq!(watcher.lines(), ["Users online (1): w"]);
    }

    #[test]
    fn commands_after_joining() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::joined(&room, "ana");
        let mut bob = Client::joined(&room, "bob");
        ana.lines();
        ana.send(b"\\w BOB hi  there\n\\w nobody x\n\\w bob\n\\help me\n\\list\n");
        assert_eq!(
            ana.lines(),
            [
                "User 'nobody' not found.",
                "Usage: \\w <name> <message>",
                "Commands: \\w <name> <message>, \\list, \\help, QUIT",
                "Users online (2): ana, bob",
            ]
        );
        assert_eq!(bob.lines(), ["priv(ana): hi  there"]);
        bob.send(b"\\o/\r\n");
        assert_eq!(ana.lines(), ["bob: \\o/"]);
    }

    #[test]
    fn lines_read_together_keep_their_order_around_commands() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::joined(&room, "ana");
        let bob = Client::joined(&room, "bob");
        ana.lines();
        bob.lines();
        ana.send(b"one\ntwo\n\\w bob psst\nthree\n\\help\n  \nfour\n");
        assert_eq!(
            bob.lines(),
            [
                "ana: one",
                "ana: two",
                "priv(ana): psst",
                "ana: three",
                "ana: four"
            ]
        );
        assert_eq!(
            ana.lines(),
            [
                "ana: one",
                "ana: two",
                "ana: three",
                "Commands: \\w <name> <message>, \\list, \\help, QUIT",
                "ana: four"
            ]
        );
    }

    #[test]
    fn a_long_burst_goes_out_in_several_events_in_order() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::with_limits(&room, 4096, 4 << 20);
        ana.send(b"ana\n");
        ana.lines();
        let text = "x".repeat(1000);
        let burst: String = (0..100).map(|i| format!("{i} {text}\n")).collect();
        ana.send(burst.as_bytes());
        let got = ana.lines();
        assert_eq!(got.len(), 100);
        for (i, line) in got.iter().enumerate() {
            assert_eq!(*line, format!("ana: {i} {text}"));
        }
    }

    #[test]
    fn quit_delivers_what_is_queued_and_others_are_told() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::joined(&room, "ana");
        let mut bob = Client::joined(&room, "bob");
        ana.lines();
        bob.send(b"bye\nQUIT\nignored\n");
        assert_eq!(bob.session.state(), SessionState::Closed);
        assert_eq!(bob.lines(), ["bob: bye"]);
        assert_eq!(bob.outbox.state(), OutboxState::Closing);
        assert_eq!(ana.lines(), ["bob: bye", "bob has left the chat."]);
        ana.send(b"\\list\n");
        assert_eq!(ana.lines(), ["Users online (1): ana"]);
    }

    #[test]
    fn input_ending_leaves_once() {
        let room = Arc::new(ChatRoom::new());
        let ana = Client::joined(&room, "ana");
        let mut bob = Client::joined(&room, "bob");
        ana.lines();
        bob.session.input_ended();
        bob.session.input_ended();
        assert_eq!(ana.lines(), ["bob has left the chat."]);
        let mut lurker = Client::new(&room);
        lurker.session.input_ended();
        assert!(ana.lines().is_empty());
    }

    #[test]
    fn name_timeout_only_in_the_handshake() {
        let room = Arc::new(ChatRoom::new());
        let mut c = Client::new(&room);
        c.session.name_timed_out();
        assert_eq!(c.lines(), ["NAME", "Timed out waiting for a name."]);
        assert!(c.session.is_closed());
        let mut ana = Client::joined(&room, "ana");
        ana.session.name_timed_out();
        assert!(!ana.session.is_closed());
    }

    #[test]
    fn an_overflowed_member_stops_reading_and_is_announced_once() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::joined(&room, "ana");
        let mut slow = Client::with_limits(&room, 64, 200);
        slow.send(b"slow\n");
        ana.lines();
        for _ in 0..20 {
            ana.send(b"0123456789\n");
        }
        assert_eq!(slow.outbox.state(), OutboxState::Aborted);
        assert_eq!(slow.send(b"still here\n"), SessionState::Closed);
        let got = ana.lines();
        assert_eq!(
            got.iter()
                .filter(|l| l.ends_with("has left the chat."))
                .count(),
            1
        );
        assert!(!got.iter().any(|l| l.contains("still here")));
    }

    #[test]
    fn a_name_whose_welcome_overflows_ends_the_connection_unheard() {
        let room = Arc::new(ChatRoom::new());
        let mut watcher = Client::joined(&room, "w");
        // `NAME` and the welcome fit, the join line does not.
        let mut c = Client::with_limits(&room, 64, 40);
        assert_eq!(c.send(b"tiny\nmore\n"), SessionState::Closed);
        assert_eq!(c.outbox.state(), OutboxState::Aborted);
        assert!(watcher.lines().is_empty());
        watcher.send(b"\\list\n");
        assert_eq!(watcher.lines(), ["Users online (1): w"]);
    }

    #[test]
    fn a_name_after_the_room_closed_gets_the_shutdown_line() {
        let room = Arc::new(ChatRoom::new());
        let mut c = Client::new(&room);
        // The room is closed, the connection table not yet: this connection
        // is reached by neither sweep.
        room.close(&Reply::ShuttingDown.encode());
        assert_eq!(c.send(b"ana\n"), SessionState::Closed);
        assert_eq!(c.outbox.state(), OutboxState::Closing);
        c.outbox.close_with(&Reply::ShuttingDown.encode());
        assert_eq!(c.lines(), ["NAME", "Server is shutting down."]);
    }

    #[test]
    fn the_list_of_a_full_room_reaches_a_member_that_reads() {
        let room = Arc::new(ChatRoom::new());
        // 10,000 names of 32 four-byte characters: the list passes 1 MiB.
        let name = |i: usize| -> String {
            let digit = |d: usize| char::from_u32(0x1F600 + d as u32).expect("an emoji");
            let mut name = "\u{1F642}".repeat(29);
            name.extend([i / 6400, i / 80 % 80, i % 80].map(digit));
            name
        };
        for i in 0..10_000 {
            let outbox = Arc::new(Outbox::new(1024));
            room.join(&name(i), outbox.clone()).expect("join");
            // Pushing to a closed outbox is cheap: the room fills fast.
            outbox.close();
        }
        let mut asker = Client::with_limits(&room, 4096, crate::outbox::DEFAULT_QUEUE_BYTES);
        asker.send("asker\n".as_bytes());
        asker.lines();
        assert!(matches!(asker.send(b"\\list\n"), SessionState::Joined(_)));
        let list = asker.lines();
        assert_eq!(list.len(), 1);
        assert!(
            list[0].len() > crate::outbox::DEFAULT_QUEUE_BYTES,
            "{}",
            list[0].len()
        );
        let expected = format!("Users online (10001): {}, ", name(0));
        assert!(list[0].starts_with(&expected));
        assert!(list[0].ends_with(&format!("{}, asker", name(9_999))));
        assert_eq!(room.len(), 10_001);
        // Asking again without reading the first is what cuts a member.
        assert_eq!(asker.send(b"\\list\n\\list\n"), SessionState::Closed);
        assert_eq!(asker.outbox.state(), OutboxState::Aborted);
        assert_eq!(room.len(), 10_000);
    }

    #[test]
    fn a_burst_read_at_once_never_overflows_a_small_queue() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::keeping_up(&room, 4096);
        let bob = Client::keeping_up(&room, 4096);
        ana.send(b"ana\n");
        let mut bob = bob;
        bob.send(b"bob\n");
        ana.taken();
        bob.taken();
        let burst: String = (0..60)
            .map(|i| format!("{i:02} {}\n", "x".repeat(97)))
            .collect();
        assert!(burst.len() > 4096);
        assert!(matches!(
            ana.send(burst.as_bytes()),
            SessionState::Joined(_)
        ));
        let expected: Vec<String> = (0..60)
            .map(|i| format!("ana: {i:02} {}", "x".repeat(97)))
            .collect();
        for (name, got) in [("ana", ana.taken()), ("bob", bob.taken())] {
            assert_eq!(got.len(), expected.len(), "{name} was cut");
            assert_eq!(got, expected);
        }
        assert_eq!(room.len(), 2);
    }

    #[test]
    fn after_shutdown_no_line_is_accepted() {
        let room = Arc::new(ChatRoom::new());
        let mut ana = Client::joined(&room, "ana");
        room.close(&Reply::ShuttingDown.encode());
        assert_eq!(ana.send(b"too late\n"), SessionState::Closed);
        assert_eq!(ana.lines(), ["Server is shutting down."]);
    }
}
