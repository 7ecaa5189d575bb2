//! Unit tests of the session, with no sockets.

use super::*;
use crate::outbox::OutboxState;
use crate::room::ChatRoom;

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
