//! Unit tests of the room, with no sockets.

use super::*;
use crate::outbox::OutboxState;
use crate::protocol::NameError;

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(1 << 20))
}

fn lines(outbox: &Outbox) -> Vec<String> {
    String::from_utf8(outbox.drain_bytes())
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn join_welcomes_and_announces_to_everyone() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    room.join("ana", a.clone()).expect("join ana");
    room.join("Bob", b.clone()).expect("join bob");
    assert_eq!(
        lines(&a),
        [
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "Bob has joined the chat."
        ]
    );
    assert_eq!(
        lines(&b),
        ["Welcome to the chat, Bob!", "Bob has joined the chat."]
    );
}

#[test]
fn names_are_unique_without_regard_to_case() {
    let room = ChatRoom::new();
    room.join("Ñandú", outbox()).expect("first join");
    assert_eq!(
        room.join("ñANDÚ", outbox()),
        Err(JoinError::NameTaken("ñANDÚ".into()))
    );
    assert_eq!(
        room.join("a b", outbox()),
        Err(JoinError::InvalidName(NameError::BadCharacter))
    );
    assert_eq!(room.len(), 1);
}

#[test]
fn broadcast_reaches_everyone_including_the_sender() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    let ana = room.join("ana", a.clone()).expect("join");
    room.join("bob", b.clone()).expect("join");
    lines(&a);
    lines(&b);
    room.broadcast(ana, "hi  all ").expect("broadcast");
    assert_eq!(lines(&a), ["ana: hi  all "]);
    assert_eq!(lines(&b), ["ana: hi  all "]);
}

#[test]
fn broadcast_all_sends_the_lines_in_order_as_one_event() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    let ana = room.join("ana", a.clone()).expect("join");
    room.join("bob", b.clone()).expect("join");
    lines(&a);
    lines(&b);
    room.broadcast_all(ana, &["one", " two ", "three"])
        .expect("broadcast");
    room.broadcast_all(ana, &[]).expect("nothing to send");
    for o in [&a, &b] {
        assert_eq!(lines(o), ["ana: one", "ana:  two ", "ana: three"]);
    }
}

#[test]
fn whisper_reaches_only_the_target_matched_without_case() {
    let room = ChatRoom::new();
    let (a, b, c) = (outbox(), outbox(), outbox());
    let ana = room.join("ana", a.clone()).expect("join");
    room.join("Bob", b.clone()).expect("join");
    room.join("cy", c.clone()).expect("join");
    for o in [&a, &b, &c] {
        lines(o);
    }
    room.whisper(ana, "BOB", "psst").expect("whisper");
    room.whisper(ana, "ANA", "note to self").expect("whisper");
    assert_eq!(lines(&a), ["priv(ana): note to self"]);
    assert_eq!(lines(&b), ["priv(ana): psst"]);
    assert!(lines(&c).is_empty());
    assert_eq!(
        room.whisper(ana, "dan", "x"),
        Err(RoomError::UserNotFound("dan".into()))
    );
}

#[test]
fn leave_removes_before_telling_and_only_once() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    let ana = room.join("ana", a.clone()).expect("join");
    let bob = room.join("bob", b.clone()).expect("join");
    lines(&a);
    assert!(room.leave(bob));
    assert!(!room.leave(bob));
    assert_eq!(lines(&a), ["bob has left the chat."]);
    assert_eq!(room.member_names(), [Arc::from("ana")]);
    assert_eq!(
        room.whisper(ana, "bob", "x"),
        Err(RoomError::UserNotFound("bob".into()))
    );
    room.join("BOB", outbox()).expect("the name is free again");
}

#[test]
fn user_list_is_in_join_order() {
    let room = ChatRoom::new();
    room.join("zed", outbox()).expect("join");
    let amy = room.join("amy", outbox()).expect("join");
    room.join("Max", outbox()).expect("join");
    room.leave(amy);
    room.join("amy", outbox()).expect("join");
    assert_eq!(&room.user_list()[..], b"Users online (3): zed, Max, amy\n");
}

#[test]
fn an_overflowing_member_is_removed_and_announced_once() {
    let room = ChatRoom::new();
    let a = outbox();
    let slow = Arc::new(Outbox::new(80));
    let ana = room.join("ana", a.clone()).expect("join");
    room.join("slow", slow.clone()).expect("join");
    lines(&a);
    for _ in 0..10 {
        room.broadcast(ana, "0123456789").expect("broadcast");
    }
    let got = lines(&a);
    assert_eq!(got.iter().filter(|l| l.starts_with("ana: ")).count(), 10);
    assert_eq!(
        got.iter()
            .filter(|l| *l == "slow has left the chat.")
            .count(),
        1
    );
    assert_eq!(room.member_names(), [Arc::from("ana")]);
    assert_eq!(slow.state(), OutboxState::Aborted);
}

#[test]
fn a_join_whose_lines_overflow_the_newcomer_is_refused_and_unheard() {
    let room = ChatRoom::new();
    let a = outbox();
    room.join("ana", a.clone()).expect("join");
    lines(&a);
    // "Welcome to the chat, tiny!\n" is 27 bytes, the join line 26: the
    // first limit takes neither, the second only the welcome.
    for limit in [20, 40] {
        let tiny = Arc::new(Outbox::new(limit));
        assert_eq!(
            room.join("tiny", tiny.clone()),
            Err(JoinError::Undeliverable)
        );
        assert_eq!(tiny.state(), OutboxState::Aborted, "limit {limit}");
    }
    let closed = outbox();
    closed.close();
    assert_eq!(room.join("tiny", closed), Err(JoinError::Undeliverable));
    assert!(lines(&a).is_empty(), "nobody is told anything");
    assert_eq!(room.member_names(), [Arc::from("ana")]);
    let t = outbox();
    room.join("TINY", t.clone())
        .expect("the name is still free");
    assert_eq!(lines(&a), ["TINY has joined the chat."]);
    assert_eq!(
        lines(&t),
        ["Welcome to the chat, TINY!", "TINY has joined the chat."]
    );
}

#[test]
fn a_newcomer_hears_of_members_its_join_overflowed() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    // Takes its own 53 bytes, not the next join line.
    let slow = Arc::new(Outbox::new(60));
    room.join("ana", a.clone()).expect("join");
    room.join("slow", slow.clone()).expect("join");
    lines(&a);
    room.join("bob", b.clone()).expect("join");
    assert_eq!(slow.state(), OutboxState::Aborted);
    let told = ["bob has joined the chat.", "slow has left the chat."];
    assert_eq!(lines(&a), told);
    assert_eq!(lines(&b)[1..], told);
}

#[test]
fn nothing_is_logged_under_the_lock() {
    use std::cell::RefCell;

    /// The room a thread watches, and what was logged: whether its lock
    /// was free, and the message.
    type Watched = Option<(Arc<ChatRoom>, Vec<(bool, String)>)>;
    thread_local! {
        static WATCHED: RefCell<Watched> = const { RefCell::new(None) };
    }
    struct LockCheck;
    impl log::Log for LockCheck {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            WATCHED.with(|watched| {
                if let Some((room, seen)) = &mut *watched.borrow_mut() {
                    let free = room.registry.try_write().is_some();
                    seen.push((free, record.args().to_string()));
                }
            });
        }
        fn flush(&self) {}
    }
    static LOGGER: LockCheck = LockCheck;
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        log::set_logger(&LOGGER).expect("the first logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });

    let room = Arc::new(ChatRoom::new());
    WATCHED.with(|w| *w.borrow_mut() = Some((room.clone(), Vec::new())));
    // Each of the three is overflowed by another path: a join, a
    // whisper, a public line.
    let ana = room.join("ana", outbox()).expect("join");
    room.join("slow", Arc::new(Outbox::new(60))).expect("join");
    room.join("quiet", Arc::new(Outbox::new(100)))
        .expect("join");
    room.whisper(ana, "quiet", &"x".repeat(60))
        .expect("whisper");
    room.join("bob", Arc::new(Outbox::new(200))).expect("join");
    room.broadcast(ana, &"y".repeat(150)).expect("broadcast");
    room.leave(ana);
    let (_, seen) = WATCHED.with(|w| w.borrow_mut().take()).expect("watched");
    assert!(room.is_empty());
    let removed = seen.iter().filter(|(_, m)| m.contains("removed")).count();
    assert_eq!(removed, 3, "{seen:?}");
    assert!(seen.len() >= 6, "{seen:?}");
    for (free, message) in &seen {
        assert!(free, "logged under the room's lock: {message}");
    }
}

#[test]
fn close_sends_the_last_line_and_refuses_everything_after() {
    let room = ChatRoom::new();
    let (a, b) = (outbox(), outbox());
    let ana = room.join("ana", a.clone()).expect("join");
    let bob = room.join("bob", b.clone()).expect("join");
    lines(&a);
    lines(&b);
    room.broadcast(ana, "before").expect("broadcast");
    room.close(&Reply::ShuttingDown.encode());
    assert_eq!(room.broadcast(bob, "after"), Err(RoomError::Closed));
    assert!(!room.leave(bob));
    assert_eq!(room.join("cy", outbox()), Err(JoinError::Closed));
    assert_eq!(lines(&a), ["ana: before", "Server is shutting down."]);
    assert_eq!(lines(&b), ["ana: before", "Server is shutting down."]);
}

#[test]
fn history_is_replayed_between_the_welcome_and_the_join_notice() {
    let room = ChatRoom::with_history(2);
    let a = outbox();
    let ana = room.join("ana", a.clone()).expect("join");
    room.broadcast_all(ana, &["one", "two"]).expect("say");
    room.whisper(ana, "ana", "never replayed").expect("whisper");
    room.broadcast(ana, "three\r").expect("say");
    let b = outbox();
    room.join("bob", b.clone()).expect("join");
    assert_eq!(
        lines(&b),
        [
            "Welcome to the chat, bob!",
            "ana: two",
            "ana: three\u{fffd}",
            "bob has joined the chat."
        ]
    );
    // Join and leave notices are not history.
    room.leave(ana);
    let c = outbox();
    room.join("cy", c.clone()).expect("join");
    assert_eq!(
        lines(&c),
        [
            "Welcome to the chat, cy!",
            "ana: two",
            "ana: three\u{fffd}",
            "cy has joined the chat."
        ]
    );
    assert_eq!(room.history_lines(), 2);
}

#[test]
fn history_of_fewer_lines_than_asked_replays_them_all() {
    let room = ChatRoom::with_history(10);
    let a = outbox();
    room.join("ana", a.clone()).expect("join");
    let b = outbox();
    room.join("bob", b.clone()).expect("join");
    assert_eq!(
        lines(&b),
        ["Welcome to the chat, bob!", "bob has joined the chat."]
    );
}

#[test]
fn a_room_without_history_replays_nothing() {
    let room = ChatRoom::new();
    let ana = room.join("ana", outbox()).expect("join");
    room.broadcast(ana, "hi").expect("say");
    let b = outbox();
    room.join("bob", b.clone()).expect("join");
    assert_eq!(
        lines(&b),
        ["Welcome to the chat, bob!", "bob has joined the chat."]
    );
    assert_eq!(room.history_lines(), 0);
}

#[test]
fn history_never_overflows_a_newcomers_outbox() {
    // 100 lines of about 100 bytes, for a newcomer holding 1,000 bytes: it
    // gets the newest that fit in half its limit, and joins.
    let room = ChatRoom::with_history(100);
    let ana = room.join("ana", outbox()).expect("join");
    let text = "x".repeat(95);
    for _ in 0..100 {
        room.broadcast(ana, &text).expect("say");
    }
    let small = Arc::new(Outbox::new(1000));
    room.join("bob", small.clone()).expect("the join fits");
    let got = lines(&small);
    let replayed = got.iter().filter(|l| l.starts_with("ana: ")).count();
    assert_eq!(replayed, 500 / 101, "{got:?}");
    assert_eq!(
        got.first().map(String::as_str),
        Some("Welcome to the chat, bob!")
    );
    assert_eq!(
        got.last().map(String::as_str),
        Some("bob has joined the chat.")
    );
}
