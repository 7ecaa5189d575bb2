//! Unit tests of the outbox and the room log, with no room and no sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

#[test]
fn push_and_take_in_order() {
    let outbox = Outbox::new(100);
    assert_eq!(outbox.push(b"a\n"), Push::Queued);
    assert_eq!(outbox.push(b"b\n"), Push::Queued);
    assert_eq!(outbox.pending_bytes(), 4);
    assert_eq!(outbox.drain_bytes(), b"a\nb\n");
    assert_eq!(outbox.pending_bytes(), 0);
}

#[test]
fn overflow_aborts_and_drops_everything() {
    let outbox = Outbox::new(5);
    assert_eq!(outbox.push(b"abc\n"), Push::Queued);
    assert_eq!(outbox.push(b"de\n"), Push::Overflow);
    assert_eq!(outbox.state(), OutboxState::Aborted);
    assert_eq!(outbox.drain_bytes(), b"");
    assert_eq!(outbox.push(b"x"), Push::Closed);
}

#[test]
fn the_limit_counts_pending_bytes_exactly() {
    let outbox = Outbox::new(4);
    assert_eq!(outbox.push(b"abcd"), Push::Queued);
    let _ = outbox.take();
    assert_eq!(outbox.push(b"efgh"), Push::Queued);
}

#[test]
fn close_keeps_what_is_queued_and_refuses_more() {
    let outbox = Outbox::new(100);
    assert_eq!(outbox.push(b"a\n"), Push::Queued);
    outbox.close_with(b"bye\n");
    outbox.close_with(b"again\n");
    assert_eq!(outbox.push(b"late\n"), Push::Closed);
    let (taken, state) = outbox.take();
    assert_eq!(state, OutboxState::Closing);
    assert_eq!(&taken[..], b"a\nbye\n");
}

#[test]
fn wait_take_wakes_on_push_from_another_thread() {
    let outbox = Arc::new(Outbox::new(100));
    let pusher = Arc::clone(&outbox);
    let handle = std::thread::spawn(move || {
        let _ = pusher.push(b"hi\n");
    });
    let mut taken = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while taken.is_empty() && std::time::Instant::now() < deadline {
        taken.extend_from_slice(&outbox.wait_take(Some(Duration::from_secs(1))).0);
    }
    handle.join().expect("pusher thread");
    assert_eq!(taken, b"hi\n");
}

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn new() -> Arc<Self> {
        Arc::new(Count(AtomicUsize::new(0)))
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn waker_is_called_when_work_appears() {
    let count = Count::new();
    let outbox = Outbox::with_waker(100, count.clone());
    let _ = outbox.push(b"a");
    let _ = outbox.push(b"b");
    assert_eq!(count.get(), 1, "only the first push wakes");
    outbox.close();
    assert_eq!(count.get(), 2);
}

// --- the room log ---------------------------------------------------------

/// A log with small chunks, so that tests see chunks come and go.
fn log(chunk: usize) -> Arc<RoomLog> {
    Arc::new(RoomLog::new(chunk))
}

fn reader(log: &Arc<RoomLog>, tag: u64, limit: usize) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(limit));
    assert!(outbox.attach(log, tag, b"", 0));
    outbox
}

/// Appends `event`, acting on the fallout as the room does; returns the
/// tags of the readers cut.
fn append(log: &Arc<RoomLog>, event: &[u8]) -> Vec<u64> {
    let mut fallout = Fallout::default();
    log.append(event, &mut fallout);
    for (outbox, kind) in fallout.wake {
        if let Some(outbox) = outbox.upgrade() {
            outbox.wake_from_log(kind);
        }
    }
    for outbox in fallout.abort {
        if let Some(outbox) = outbox.upgrade() {
            outbox.abort();
        }
    }
    fallout
        .cut
        .into_iter()
        .map(|(tag, outbox)| {
            if let Some(outbox) = outbox.upgrade() {
                outbox.abort();
            }
            tag
        })
        .collect()
}

/// Writes at most `n` bytes of what is due, as a writer would.
fn read_up_to(outbox: &Outbox, n: usize) -> Vec<u8> {
    let mut batch = WriteBatch::with_limits(3, n);
    outbox.fill(&mut batch);
    let mut out = Vec::new();
    batch.copy_to(&mut out);
    outbox.consume(&mut batch, out.len());
    out
}

#[test]
fn cursors_start_at_the_join_and_move_as_bytes_are_written() {
    let log = log(16);
    let a = reader(&log, 1, 1000);
    append(&log, b"one\n");
    let b = reader(&log, 2, 1000);
    append(&log, b"two\n");
    append(&log, b"three\n");
    assert_eq!(a.pending_bytes(), 14);
    assert_eq!(b.pending_bytes(), 10);
    assert_eq!(read_up_to(&a, 6), b"one\ntw");
    assert_eq!(a.pending_bytes(), 8);
    assert_eq!(read_up_to(&a, 100), b"o\nthree\n");
    assert_eq!(b.drain_bytes(), b"two\nthree\n");
    assert_eq!(a.pending_bytes(), 0);
    append(&log, b"four\n");
    assert_eq!(a.drain_bytes(), b"four\n");
    assert_eq!(b.drain_bytes(), b"four\n");
}

#[test]
fn a_batch_refers_to_the_log_without_copying_and_gathers_short_runs() {
    let log = log(4096);
    let a = reader(&log, 1, 100_000);
    let b = reader(&log, 2, 100_000);
    let long = [b'L'; 2000];
    append(&log, &long);
    let (mut x, mut y) = (WriteBatch::new(), WriteBatch::new());
    a.fill(&mut x);
    b.fill(&mut y);
    assert_eq!(x.parts().len(), 1);
    assert_eq!(x.parts()[0].as_ptr(), y.parts()[0].as_ptr(), "one copy");
    a.consume(&mut x, 2000);
    // Short runs (each its own piece, as each was read at once) go out as
    // one part, copied together.
    for line in [&b"one\n"[..], b"two\n", b"three\n"] {
        append(&log, line);
        b.fill(&mut y);
    }
    a.fill(&mut x);
    assert_eq!(x.parts().len(), 1);
    assert_eq!(&x.parts()[0][..], b"one\ntwo\nthree\n");
    a.consume(&mut x, 5);
    assert_eq!(a.drain_bytes(), b"wo\nthree\n");
}

#[test]
fn chunks_are_freed_once_every_cursor_has_passed_them() {
    let log = log(64);
    let a = reader(&log, 1, 10_000);
    let b = reader(&log, 2, 10_000);
    let line = [b'x'; 31];
    for _ in 0..20 {
        append(&log, &line);
    }
    let stats = log.lock().stats();
    assert_eq!(stats.kept_bytes, 620);
    assert!(stats.chunk_bytes >= 620);
    a.drain_bytes();
    for _ in 0..4 {
        append(&log, &line);
    }
    assert!(
        log.lock().stats().kept_bytes >= 620,
        "b still holds everything"
    );
    b.drain_bytes();
    a.drain_bytes();
    for _ in 0..4 {
        append(&log, &line);
    }
    let stats = log.lock().stats();
    assert!(stats.kept_bytes <= 4 * 31 + 64, "{stats:?}");
    assert!(stats.chunk_bytes <= 4 * 64, "{stats:?}");
    drop((a, b));
    append(&log, &line);
    let stats = log.lock().stats();
    assert_eq!(stats.readers, 0);
    assert!(stats.chunk_bytes <= 64, "{stats:?}");
}

#[test]
fn private_lines_come_out_where_they_were_accepted() {
    let log = log(32);
    let a = reader(&log, 1, 1000);
    assert_eq!(a.push(b"p0\n"), Push::Queued);
    append(&log, b"L1\n");
    append(&log, b"L2\n");
    assert_eq!(a.push(b"p1\n"), Push::Queued);
    assert_eq!(a.push(b"p2\n"), Push::Queued);
    append(&log, b"L3\n");
    assert_eq!(a.push(b"p3\n"), Push::Queued);
    let expected = b"p0\nL1\nL2\np1\np2\nL3\np3\n";
    // Any way of reading it gives the same bytes.
    for step in [1, 2, 4, 7, 100] {
        let b = reader(&log, 2, 1000);
        let c = Arc::new(Outbox::new(1000));
        let _ = c.push(b"p0\n");
        assert!(c.attach(&log, 3, b"", 0));
        append(&log, b"L1\n");
        append(&log, b"L2\n");
        let _ = c.push(b"p1\n");
        let _ = c.push(b"p2\n");
        append(&log, b"L3\n");
        let _ = c.push(b"p3\n");
        let mut got = Vec::new();
        loop {
            let part = read_up_to(&c, step);
            if part.is_empty() {
                break;
            }
            got.extend_from_slice(&part);
        }
        assert_eq!(got, expected, "step {step}");
        assert_eq!(b.drain_bytes(), b"L1\nL2\nL3\n");
    }
    assert!(a.drain_bytes().starts_with(expected));
}

#[test]
fn a_reader_past_its_limit_is_cut_and_the_others_keep_receiving() {
    let log = log(64);
    let slow = reader(&log, 1, 100);
    let fast = reader(&log, 2, 100);
    let line = [b'y'; 25];
    let mut received = 0;
    for i in 0..4 {
        assert!(append(&log, &line).is_empty(), "line {i}");
        received += fast.drain_bytes().len();
    }
    assert_eq!(slow.pending_bytes(), 100, "exactly at the limit");
    assert_eq!(append(&log, &line), [1], "one byte over: cut");
    assert_eq!(slow.state(), OutboxState::Aborted);
    assert!(slow.drain_bytes().is_empty());
    for _ in 0..20 {
        assert!(append(&log, &line).is_empty());
        received += fast.drain_bytes().len();
    }
    assert_eq!(received, 25 * 25);
    let stats = log.lock().stats();
    assert_eq!(stats.readers, 1);
    assert!(stats.kept_bytes <= 100 + 64, "{stats:?}");
}

#[test]
fn private_bytes_count_toward_the_limit() {
    let log = log(64);
    let a = reader(&log, 1, 50);
    append(&log, &[b'z'; 30]);
    assert_eq!(a.push(&[b'p'; 20]), Push::Queued);
    assert_eq!(a.pending_bytes(), 50);
    assert_eq!(append(&log, b"\n"), [1]);
    let b = reader(&log, 2, 50);
    append(&log, &[b'z'; 30]);
    assert_eq!(b.push(&[b'p'; 21]), Push::Overflow);
    assert_eq!(b.state(), OutboxState::Aborted);
    assert_eq!(log.lock().stats().readers, 0);
}

#[test]
fn a_writer_that_caught_up_is_woken_by_the_next_append_only() {
    let log = log(64);
    let count = Count::new();
    let a = Arc::new(Outbox::with_waker(1000, count.clone()));
    assert!(a.attach(&log, 1, b"", 0));
    append(&log, b"1\n");
    assert_eq!(count.get(), 1, "the writer had found nothing yet");
    append(&log, b"2\n");
    assert_eq!(count.get(), 1, "it has not looked since");
    assert_eq!(a.drain_bytes(), b"1\n2\n");
    append(&log, b"3\n");
    append(&log, b"4\n");
    assert_eq!(count.get(), 2);
}

#[test]
fn the_log_tells_a_writer_that_put_off_writing_once_its_backlog_is_urgent() {
    #[derive(Default)]
    struct Heard(parking_lot::Mutex<Vec<&'static str>>);
    impl Wake for Heard {
        fn wake(&self) {
            self.0.lock().push("wake");
        }
        fn wake_urgent(&self) {
            self.0.lock().push("urgent");
        }
    }
    let heard = Arc::new(Heard::default());
    let log = log(64);
    let a = Arc::new(Outbox::with_waker(400, heard.clone()));
    assert!(a.attach(&log, 1, b"", 0));
    assert_eq!(a.urgent_bytes(), 100);
    let check = |event: &[u8], expected: &[&str]| {
        append(&log, event);
        assert_eq!(std::mem::take(&mut *heard.0.lock()), expected, "{event:?}");
    };
    check(&[b'a'; 60], &["wake"]);
    check(&[b'b'; 30], &[]);
    check(&[b'c'; 10], &["urgent"]);
    check(&[b'd'; 50], &[]);
    // Writing takes it back under the level; reaching it again is heard.
    assert_eq!(read_up_to(&a, 100).len(), 100);
    check(&[b'e'; 10], &[]);
    check(&[b'f'; 40], &["urgent"]);
    // A private line may reach it too.
    assert_eq!(read_up_to(&a, 50).len(), 50);
    assert_eq!(a.push(&[b'p'; 49]), Push::Queued);
    assert!(heard.0.lock().is_empty());
    assert_eq!(a.push(b"q"), Push::Queued);
    assert_eq!(std::mem::take(&mut *heard.0.lock()), ["urgent"]);
}

#[test]
fn leaving_stops_at_the_log_end_and_later_private_lines_follow() {
    let log = log(64);
    let a = reader(&log, 1, 1000);
    append(&log, b"before\n");
    a.leave_log();
    append(&log, b"after\n");
    let _ = a.push(b"private\n");
    assert_eq!(a.drain_bytes(), b"before\nprivate\n");
    assert_eq!(log.lock().stats().readers, 0);
}

#[test]
fn closing_writes_the_log_up_to_now_then_the_last_line() {
    let log = log(64);
    let a = reader(&log, 1, 100);
    append(&log, b"1234567890");
    a.close_with(b"bye\n");
    append(&log, b"later\n");
    assert_eq!(a.state(), OutboxState::Closing);
    assert_eq!(a.drain_bytes(), b"1234567890bye\n");
    assert_eq!(a.take().1, OutboxState::Closing);
}

#[test]
fn joining_again_keeps_what_the_first_membership_had_to_write() {
    let (one, two) = (log(64), log(64));
    let a = reader(&one, 1, 1000);
    append(&one, b"first room\n");
    let _ = a.push(b"p\n");
    let b = reader(&two, 1, 1000);
    assert!(a.attach(&two, 2, b"", 0));
    append(&two, b"second room\n");
    assert_eq!(a.drain_bytes(), b"first room\np\nsecond room\n");
    assert_eq!(b.drain_bytes(), b"second room\n");
    assert_eq!(one.lock().stats().readers, 0);
}

#[test]
fn a_write_in_flight_when_the_reader_is_cut_changes_nothing() {
    let log = log(64);
    let a = reader(&log, 1, 20);
    append(&log, b"0123456789");
    let mut batch = WriteBatch::new();
    a.fill(&mut batch);
    assert_eq!(append(&log, &[b'x'; 21]), [1]);
    a.consume(&mut batch, 10);
    assert_eq!(a.state(), OutboxState::Aborted);
    assert!(a.drain_bytes().is_empty());
}

#[test]
fn a_reader_that_left_is_held_to_its_limit_too() {
    // It reads nothing new, but its cursor would hold the log back: once
    // the room has moved a limit past it, it is cut like any other.
    let log = log(64);
    let gone = reader(&log, 1, 50);
    append(&log, &[b'a'; 20]);
    gone.leave_log();
    assert_eq!(gone.pending_bytes(), 20);
    assert!(append(&log, &[b'b'; 30]).is_empty(), "20 + 30 = the limit");
    assert_eq!(gone.state(), OutboxState::Open);
    assert!(append(&log, b"c").is_empty(), "not a member to remove");
    assert_eq!(gone.state(), OutboxState::Aborted);
}

#[test]
fn bytes_in_the_writers_hands_count_again_only_if_they_did_not_go_out() {
    let log = log(64);
    let a = reader(&log, 1, 30);
    append(&log, &[b'a'; 30]);
    let mut batch = WriteBatch::new();
    a.fill(&mut batch);
    assert_eq!(batch.len(), 30);
    assert!(
        append(&log, &[b'b'; 30]).is_empty(),
        "the 30 bytes being written do not count"
    );
    a.consume(&mut batch, 10);
    assert_eq!(a.pending_bytes(), 50);
    assert_eq!(append(&log, b"c"), [1], "20 + 30 + 1 bytes are over 30");
}

#[test]
fn a_requested_reply_may_pass_the_limit_once_until_taken() {
    let outbox = Outbox::new(10);
    let list = [b'x'; 30];
    assert_eq!(outbox.push(b"abcd\n"), Push::Queued);
    assert_eq!(outbox.push_reply(&list), Push::Queued, "exempt");
    assert_eq!(outbox.push(b"efgh\n"), Push::Queued, "10 bytes count");
    assert_eq!(outbox.pending_bytes(), 40);
    assert_eq!(outbox.push(b"i"), Push::Overflow, "11 bytes count");
    let outbox = Outbox::new(10);
    assert_eq!(outbox.push_reply(&list), Push::Queued);
    let _ = outbox.take();
    assert_eq!(outbox.push_reply(&list), Push::Queued, "exempt again");
    assert_eq!(
        outbox.push_reply(&list),
        Push::Overflow,
        "asked again before the first was taken"
    );
    assert_eq!(outbox.state(), OutboxState::Aborted);
}

#[test]
fn a_requested_reply_does_not_count_in_the_room_either() {
    let log = log(64);
    let a = reader(&log, 1, 50);
    append(&log, &[b'a'; 20]);
    assert_eq!(a.push_reply(&[b'L'; 200]), Push::Queued);
    assert!(append(&log, &[b'b'; 30]).is_empty(), "20 + 30 count");
    assert_eq!(a.pending_bytes(), 250);
    // Taking the reply ends its exemption: what of it does not go out
    // counts again.
    let mut batch = WriteBatch::unbounded();
    a.fill(&mut batch);
    assert_eq!(batch.len(), 250);
    a.consume(&mut batch, 100);
    assert_eq!(a.pending_bytes(), 150);
    assert_eq!(append(&log, &[b'c'; 20]), [1], "120 + 30 + 20 count");
}

#[test]
fn the_waker_hears_again_when_pending_bytes_turn_urgent() {
    #[derive(Default)]
    struct Heard(parking_lot::Mutex<Vec<&'static str>>);
    impl Wake for Heard {
        fn wake(&self) {
            self.0.lock().push("wake");
        }
        fn wake_urgent(&self) {
            self.0.lock().push("urgent");
        }
    }
    let heard = Arc::new(Heard::default());
    let outbox = Outbox::with_waker(400, heard.clone());
    assert_eq!(outbox.urgent_bytes(), 100);
    for (bytes, expected) in [(60, &["wake"][..]), (30, &[]), (20, &["urgent"]), (50, &[])] {
        assert_eq!(outbox.push(&vec![b'x'; bytes]), Push::Queued);
        assert_eq!(std::mem::take(&mut *heard.0.lock()), expected, "{bytes}");
    }
    let _ = outbox.take();
    assert_eq!(outbox.push(&[b'x'; 150]), Push::Queued);
    assert_eq!(std::mem::take(&mut *heard.0.lock()), ["urgent"]);
    assert_eq!(Outbox::new(1 << 20).urgent_bytes(), URGENT_BYTES);
}
