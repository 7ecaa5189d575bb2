//! Unit tests of a session whose room answers later (a [`RoomBackend`]),
//! with no sockets: input held while the name is pending, the answer taken
//! on resume, the claim given up when the connection ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::*;
use crate::outbox::{OutboxState, Wake};
use crate::protocol::validate_name;
use crate::room::{ChatRoom, RoomBackend};

/// A claim waiting for its answer: its ticket, the name, the outbox.
type Pending = (Arc<JoinTicket>, String, Arc<Outbox>);

/// A room whose name claims wait for the test to answer them; everything
/// else is relayed at once to its local room.
#[derive(Debug)]
struct Later {
    local: Arc<ChatRoom>,
    claims: Mutex<Vec<Pending>>,
    names: Mutex<HashMap<MemberId, String>>,
    left: Mutex<Vec<MemberId>>,
}

impl Later {
    fn new() -> Arc<Self> {
        Arc::new(Later {
            local: Arc::new(ChatRoom::relayed()),
            claims: Mutex::default(),
            names: Mutex::default(),
            left: Mutex::default(),
        })
    }

    /// Answers the oldest claim still pending.
    fn answer(&self, join: bool) {
        let (ticket, name, outbox) = self.claims.lock().remove(0);
        if join {
            let id = ticket.member();
            self.names.lock().insert(id, name.clone());
            self.local
                .relay_join(id, &name, outbox, b"")
                .expect("the join");
            ticket.resolve(Ok(()));
        } else {
            ticket.resolve(Err(JoinError::NameTaken(name)));
        }
    }

    fn left(&self) -> Vec<MemberId> {
        self.left.lock().clone()
    }
}

impl RoomBackend for Later {
    fn local(&self) -> &Arc<ChatRoom> {
        &self.local
    }

    fn claim(&self, name: &str, outbox: &Arc<Outbox>) -> Claim {
        if let Err(error) = validate_name(name) {
            return Claim::Refused(error.into());
        }
        let ticket = JoinTicket::new(self.local.reserve_id(), outbox);
        self.claims
            .lock()
            .push((ticket.clone(), name.to_owned(), outbox.clone()));
        Claim::Pending(ticket)
    }

    fn say(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError> {
        let name = self.names.lock().get(&from).cloned();
        let name = name.ok_or(RoomError::NotMember(from))?;
        self.local.relay_said(&name, texts);
        Ok(())
    }

    fn whisper(&self, _: MemberId, target: &str, _: &str) -> Result<(), RoomError> {
        Err(RoomError::UserNotFound(target.to_owned()))
    }

    fn list(&self, from: MemberId, _: &Arc<Outbox>) -> Result<(), RoomError> {
        let names: Vec<String> = self.names.lock().values().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.local
            .relay_private(from, &Reply::UserList(&names).encode(), true);
        Ok(())
    }

    fn reply(&self, from: MemberId, _: &Arc<Outbox>, line: Bytes) -> Result<(), RoomError> {
        self.local.relay_private(from, &line, false);
        Ok(())
    }

    fn leave(&self, id: MemberId, outbox: &Arc<Outbox>) {
        self.left.lock().push(id);
        match self.names.lock().remove(&id) {
            Some(name) => {
                self.local.relay_left(Some(id), &name);
            }
            None => outbox.close(),
        }
    }
}

/// Counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn lines(outbox: &Outbox) -> Vec<String> {
    String::from_utf8(outbox.drain_bytes())
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn session(room: &Arc<Later>) -> (Session, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let room = Room::backend(room.clone());
    (Session::new(room, outbox.clone(), 64), outbox)
}

#[test]
fn lines_sent_while_the_name_is_pending_wait_for_the_answer() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    let mut held = BytesMut::from(&b"ana\nhello\n\\help\nhalf"[..]);
    assert_eq!(s.receive(&mut held), SessionState::Joining);
    assert!(s.is_waiting());
    assert_eq!(lines(&outbox), ["NAME"]);
    assert_eq!(&held[..], b"hello\n\\help\nhalf", "the input is held");
    assert!(!s.resume(&mut held), "no answer yet");
    assert!(!s.wait_answer(Duration::from_millis(1)));

    room.answer(true);
    assert!(s.wait_answer(Duration::ZERO));
    assert!(s.resume(&mut held));
    assert!(matches!(s.state(), SessionState::Joined(_)));
    assert_eq!(&held[..], b"half", "an unfinished line stays");
    assert_eq!(
        lines(&outbox),
        [
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
            "Commands: \\w <name> <message>, \\list, \\help, QUIT"
        ]
    );
    held.extend_from_slice(b"\n\\list\n\\w nobody hi\n");
    s.receive(&mut held);
    assert_eq!(
        lines(&outbox),
        [
            "ana: half",
            "Users online (1): ana",
            "User 'nobody' not found."
        ]
    );
}

#[test]
fn a_taken_name_is_asked_again_and_the_held_input_goes_on() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    let mut held = BytesMut::from(&b"ana\nbob\nhi\n"[..]);
    s.receive(&mut held);
    room.answer(false);
    assert!(s.resume(&mut held));
    // `bob` was the next line: claimed in turn, and pending.
    assert_eq!(s.state(), SessionState::Joining);
    assert_eq!(&held[..], b"hi\n");
    room.answer(true);
    assert!(s.resume(&mut held));
    assert_eq!(
        lines(&outbox),
        [
            "NAME",
            "Name 'ana' is already taken.",
            "NAME",
            "Welcome to the chat, bob!",
            "bob has joined the chat.",
            "bob: hi"
        ]
    );
}

#[test]
fn an_invalid_name_is_refused_at_once() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    s.receive(&mut BytesMut::from(&b"a b\n"[..]));
    assert_eq!(s.state(), SessionState::Handshake);
    assert_eq!(lines(&outbox).len(), 3, "NAME, the refusal, NAME");
}

#[test]
fn the_answer_wakes_the_connections_writer() {
    let room = Later::new();
    let count = Arc::new(Count::default());
    let outbox = Arc::new(Outbox::with_waker(1 << 20, count.clone()));
    let mut s = Session::new(Room::backend(room.clone()), outbox.clone(), 64);
    s.receive(&mut BytesMut::from(&b"ana\n"[..]));
    // The writer is busy with `NAME` (it has not found nothing yet), so
    // the welcome alone would not wake it: the answer must.
    let before = count.0.load(Ordering::SeqCst);
    let (ticket, _, _) = room.claims.lock()[0].clone();
    ticket.resolve(Err(JoinError::Unavailable));
    assert!(count.0.load(Ordering::SeqCst) > before);
    assert!(s.resume(&mut BytesMut::new()));
    assert_eq!(
        lines(&outbox),
        ["NAME", "Message not sent: the room is unavailable.", "NAME"]
    );
    assert!(!ticket.resolve(Ok(())), "only the first answer counts");
}

#[test]
fn the_end_of_input_while_pending_gives_the_claim_up() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    s.receive(&mut BytesMut::from(&b"ana\n"[..]));
    let id = room.claims.lock()[0].0.member();
    s.input_ended();
    assert!(s.is_closed());
    assert_eq!(room.left(), [id]);
    assert_eq!(outbox.state(), OutboxState::Closing);
}

#[test]
fn the_name_timeout_while_pending_gives_the_claim_up() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    s.receive(&mut BytesMut::from(&b"ana\n"[..]));
    let id = room.claims.lock()[0].0.member();
    s.name_timed_out();
    assert!(s.is_closed());
    assert_eq!(room.left(), [id]);
    assert_eq!(lines(&outbox), ["NAME", "Timed out waiting for a name."]);
}

#[test]
fn an_answer_that_came_before_the_timeout_wins() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    s.receive(&mut BytesMut::from(&b"ana\n"[..]));
    room.answer(true);
    s.name_timed_out();
    assert!(matches!(s.state(), SessionState::Joined(_)));
    assert!(room.left().is_empty());
    assert_eq!(
        lines(&outbox).last().map(String::as_str),
        Some("ana has joined the chat.")
    );
}

#[test]
fn a_shutdown_while_pending_ends_the_session() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    let mut held = BytesMut::from(&b"ana\nhi\n"[..]);
    s.receive(&mut held);
    // What the server's shutdown does to connections not yet joined.
    outbox.close_with(&Reply::ShuttingDown.encode());
    assert!(s.wait_answer(Duration::ZERO), "nothing more to wait for");
    assert!(s.resume(&mut held));
    assert!(s.is_closed());
    assert_eq!(room.left().len(), 1, "the claim is given up");
    assert_eq!(lines(&outbox), ["NAME", "Server is shutting down."]);
}

#[test]
fn a_member_leaves_through_the_room_which_closes_its_outbox() {
    let room = Later::new();
    let (mut s, outbox) = session(&room);
    let mut held = BytesMut::from(&b"ana\n"[..]);
    s.receive(&mut held);
    room.answer(true);
    s.resume(&mut held);
    lines(&outbox);
    s.receive(&mut BytesMut::from(&b"bye\nQUIT\n"[..]));
    assert!(s.is_closed());
    assert_eq!(lines(&outbox), ["ana: bye"]);
    assert_eq!(outbox.state(), OutboxState::Closing);
}
