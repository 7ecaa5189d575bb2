//! The room's fan-out with no I/O: a [`ChatRoom`] of 1,000 members, each with
//! an [`Outbox`] (1 MiB limit, no waker) that nothing writes to a socket.
//!
//! - `room/broadcast_1000`: one public line from a member to all 1,000
//!   (sender included), under the room's write lock. The line is encoded
//!   and appended once to the room's log; no member's outbox is touched,
//!   except to wake those whose writer had caught up (here, once per chunk
//!   of 16 lines, as every member is drained between chunks). Reported per
//!   line (`Throughput::Elements(1)`). Before the room log (issue 8) the
//!   line was copied into each of the 1,000 outboxes, and the figure was
//!   per recipient copy.
//! - `room/whisper_1000`: one private line from a member to another, found by
//!   name (case-folded key, hash lookup) under the read lock: 1 delivery.
//! - `room/join_leave_1000`: a newcomer joins a room of 1,000 and leaves again:
//!   name validation and key, the welcome to the newcomer, its join notice
//!   and its leave notice appended to the log once each. Reported per join
//!   and leave. The newcomer's outbox is made once, outside the
//!   measurement, and reused.
//! - `room/write_1000`: the writer side, for scale: each of 1,000 members'
//!   writers fills a [`WriteBatch`] with what is due (one queued line: a
//!   reference to the log's shared chunk, no copy) and consumes it, as after
//!   a write. Reported per member.
//!
//! Outboxes must be emptied or their members are cut. The first three
//! benches run in timed chunks of a few operations and empty every outbox
//! between chunks with the clock stopped, so their figures exclude the
//! draining; `write_1000` measures that draining alone.
//!
//! Run: `cargo bench --bench room`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatcore::outbox::WriteBatch;
use chatcore::{ChatRoom, MemberId, Outbox};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MEMBERS: usize = 1000;
const OUTBOX_LIMIT: usize = 1 << 20;
/// A 32-byte message text.
const TEXT: &str = "the quick brown fox jumps over i";

struct Fixture {
    room: ChatRoom,
    outboxes: Vec<Arc<Outbox>>,
    ids: Vec<MemberId>,
}

impl Fixture {
    /// A room of `MEMBERS` members named `m0`, `m1`, …, outboxes emptied.
    fn new() -> Self {
        let room = ChatRoom::new();
        let mut outboxes = Vec::with_capacity(MEMBERS);
        let mut ids = Vec::with_capacity(MEMBERS);
        for i in 0..MEMBERS {
            let outbox = Arc::new(Outbox::new(OUTBOX_LIMIT));
            ids.push(room.join(&format!("m{i}"), outbox.clone()).expect("join"));
            outboxes.push(outbox);
        }
        let mut fixture = Fixture {
            room,
            outboxes,
            ids,
        };
        fixture.drain();
        fixture
    }

    /// Empties every member's outbox; returns how many lines were queued.
    fn drain(&mut self) -> usize {
        let mut lines = 0;
        for outbox in &self.outboxes {
            lines += count_lines(&outbox.take().0);
        }
        lines
    }
}

/// How many lines a taken buffer holds.
fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Runs `op` `iters` times in timed chunks of at most `chunk`, calling the
/// untimed `between` after each chunk; returns the time spent in `op` only.
fn chunked(iters: u64, chunk: u64, mut op: impl FnMut(), mut between: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        total += start.elapsed();
        between();
        left -= n;
    }
    total
}

fn room(c: &mut Criterion) {
    let mut group = c.benchmark_group("room");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    // Broadcast: at most 16 lines (~37 bytes each) queue per outbox between
    // drains, as with a writer that keeps up.
    {
        let mut f = Fixture::new();
        let sender = f.ids[0];
        f.room.broadcast(sender, TEXT).expect("broadcast");
        assert_eq!(f.drain(), MEMBERS, "one line per member");
        let room = &f.room;
        let outboxes = &f.outboxes;
        group.throughput(Throughput::Elements(1));
        group.bench_function("broadcast_1000", |b| {
            b.iter_custom(|iters| {
                chunked(
                    iters,
                    16,
                    || room.broadcast(sender, black_box(TEXT)).expect("broadcast"),
                    || {
                        for outbox in outboxes {
                            drop(outbox.take());
                        }
                    },
                )
            })
        });
        assert_eq!(f.room.len(), MEMBERS, "nobody overflowed");
    }

    // Whisper from the first member to one in the middle, by name.
    {
        let mut f = Fixture::new();
        let sender = f.ids[0];
        let target_name = format!("m{}", MEMBERS / 2);
        let target = f.outboxes[MEMBERS / 2].clone();
        f.room.whisper(sender, &target_name, TEXT).expect("whisper");
        assert_eq!(f.drain(), 1, "one line to one member");
        let room = &f.room;
        group.throughput(Throughput::Elements(1));
        group.bench_function("whisper_1000", |b| {
            b.iter_custom(|iters| {
                chunked(
                    iters,
                    256,
                    || {
                        room.whisper(sender, black_box(&target_name), black_box(TEXT))
                            .expect("whisper")
                    },
                    || {
                        drop(target.take());
                    },
                )
            })
        });
        assert_eq!(f.room.len(), MEMBERS, "nobody overflowed");
    }

    // Join + leave of a newcomer: 1 welcome + 1,001 join notices + 1,000
    // leave notices per iteration.
    {
        let mut f = Fixture::new();
        let newcomer = Arc::new(Outbox::new(OUTBOX_LIMIT));
        let id = f.room.join("newcomer", newcomer.clone()).expect("join");
        assert!(f.room.leave(id));
        assert_eq!(
            count_lines(&newcomer.take().0),
            2,
            "welcome and own join notice"
        );
        assert_eq!(f.drain(), 2 * MEMBERS, "join and leave notices");
        let room = &f.room;
        let outboxes = &f.outboxes;
        group.throughput(Throughput::Elements(1));
        group.bench_function("join_leave_1000", |b| {
            b.iter_custom(|iters| {
                chunked(
                    iters,
                    16,
                    || {
                        let id = room
                            .join(black_box("newcomer"), newcomer.clone())
                            .expect("join");
                        assert!(room.leave(id));
                    },
                    || {
                        drop(newcomer.take());
                        for outbox in outboxes {
                            drop(outbox.take());
                        }
                    },
                )
            })
        });
        assert_eq!(f.room.len(), MEMBERS, "nobody overflowed");
    }

    // The writer side: each of 1,000 writers fills a batch with its one
    // queued line and consumes it.
    {
        let f = Fixture::new();
        let sender = f.ids[0];
        let room = &f.room;
        let outboxes = &f.outboxes;
        let mut batch = WriteBatch::new();
        group.throughput(Throughput::Elements(MEMBERS as u64));
        group.bench_function("write_1000", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    room.broadcast(sender, TEXT).expect("broadcast");
                    let start = Instant::now();
                    for outbox in outboxes {
                        outbox.fill(&mut batch);
                        let n = black_box(batch.len());
                        outbox.consume(&mut batch, n);
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }

    group.finish();
}

criterion_group!(benches, room);
criterion_main!(benches);
