//! One churning member: connect, take a fresh name, read its welcome and its
//! own join notice, stay a random while reading and checking every line,
//! leave (by `QUIT`, or by just closing), and again, until the run ends.

use super::notices::{churner_name, Notices};
use crate::linebuf::LineBuf;
use crate::proto::{self, Event};
use crate::shared::Shared;
use crate::stats::{lock, MemberStats};
use crate::transport::{Reader, Writer};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::{sleep_until, timeout_at};

/// Bound on connecting and the handshake, up to the member's own join notice.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Bound on the server closing the connection after `QUIT`.
const CLOSE: Duration = Duration::from_secs(10);
/// Pause after a failed stay, so a refusing server is not hammered.
const BACKOFF: Duration = Duration::from_millis(100);

/// The churning members' counters, shared by all of them.
#[derive(Default)]
pub struct Counters {
    /// The number of the next stay (it makes the stay's name).
    pub next_name: AtomicU64,
    /// Stays that reached their own join notice.
    pub joined: AtomicU64,
    /// Stays that ended with `QUIT` and the server's close, or by closing.
    pub quits: AtomicU64,
    pub closes: AtomicU64,
    /// Payloads the churning members received.
    pub deliveries: AtomicU64,
    /// Anything that failed a check; the first one is kept.
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, why: String) {
        self.errors.fetch_add(1, Relaxed);
        lock(&self.first_error).get_or_insert(why);
    }

    /// Adds what one stay saw.
    fn absorb(&self, name: &str, st: &MemberStats) {
        self.deliveries.fetch_add(st.deliveries, Relaxed);
        let bad = st.errors() + st.dups + st.misordered;
        if bad == 0 {
            return;
        }
        self.errors.fetch_add(bad, Relaxed);
        let why = match (
            &st.first_other,
            st.notices.as_ref().and_then(|n| n.first_bad.as_ref()),
        ) {
            (Some(line), _) => format!("unexpected line {line:?}"),
            (None, Some(notice)) => notice.clone(),
            _ => format!("{} duplicated, {} misordered", st.dups, st.misordered),
        };
        lock(&self.first_error).get_or_insert(format!("{name}: {why}"));
    }
}

/// A small xorshift generator for stays and ways of leaving.
struct Rng(u64);

impl Rng {
    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs churning member `k` from `start` until `end`.
pub async fn run(
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    k: usize,
    start: Instant,
    end: Instant,
) {
    let c = &shared.args.churn;
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((k as u64 + 1) << 24));
    // Spread the first joins over the shortest stay.
    let offset = c.stay_min * k as f64 / c.churners.max(1) as f64;
    sleep_until((start + Duration::from_secs_f64(offset)).min(end).into()).await;
    while Instant::now() < end {
        let n = counters.next_name.fetch_add(1, Relaxed);
        let name = churner_name(&shared.args.name_prefix, n);
        let stay = c.stay_min + (c.stay_max - c.stay_min) * rng.unit();
        let quit = rng.unit() < c.quit_share;
        if let Err(why) = stay_once(&shared, &counters, &name, stay, quit, end).await {
            counters.error(format!("{name}: {why}"));
            sleep_until((Instant::now() + BACKOFF).min(end).into()).await;
        }
    }
}

/// Where a stay is.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Stage {
    /// Waiting for `NAME`.
    Name,
    /// Waiting for `Welcome to the chat, <name>!`.
    Welcome,
    /// Waiting for its own join notice; no payload may come before it.
    OwnJoin,
    /// In the room.
    Stay,
}

/// One stay. Errors end it; lines that fail a check are counted in
/// `counters` and the stay goes on.
async fn stay_once(
    shared: &Shared,
    counters: &Counters,
    name: &str,
    stay: f64,
    quit: bool,
    end: Instant,
) -> Result<(), String> {
    let args = &shared.args;
    let mut deadline = Instant::now() + HANDSHAKE;
    let mut connected = None;
    let connecting = shared.connector.connect(&mut connected);
    let (mut reader, mut writer) = match timeout_at(deadline.into(), connecting).await {
        Ok(Ok(halves)) => halves,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("connect timed out".into()),
    };
    let mut lb = LineBuf::new(args.read_buf_bytes());
    let mut st = MemberStats::new(args.senders);
    st.notices = Some(Notices::new(&args.name_prefix, false));
    let welcome = format!("Welcome to the chat, {name}!");
    let own_join = format!("{name} has joined the chat.");
    let mut stage = Stage::Name;
    let result = loop {
        while let Some(line) = lb.next_line() {
            st.lines += 1;
            match stage {
                Stage::Name if line == b"NAME" => {
                    stage = Stage::Welcome;
                    let hello = format!("{name}\n");
                    if let Err(e) = writer.write_all(hello.as_bytes()).await {
                        return Err(format!("write name: {e}"));
                    }
                }
                Stage::Welcome if line == welcome.as_bytes() => stage = Stage::OwnJoin,
                Stage::Name | Stage::Welcome => {
                    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
                    return Err(format!("unexpected line in the handshake: {text:?}"));
                }
                Stage::OwnJoin if line == own_join.as_bytes() => {
                    stage = Stage::Stay;
                    counters.joined.fetch_add(1, Relaxed);
                    deadline = (Instant::now() + Duration::from_secs_f64(stay)).min(end);
                }
                _ => check(shared, &mut st, line, stage == Stage::OwnJoin),
            }
        }
        match timeout_at(deadline.into(), lb.fill(&mut reader)).await {
            Ok(Ok(0)) => break Err("the server closed the connection".to_owned()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break Err(format!("read: {e}")),
            Err(_) if stage == Stage::Stay => break Ok(()),
            Err(_) => break Err("timed out before its own join notice".to_owned()),
        }
    };
    if result.is_ok() {
        if quit {
            leave_by_quit(shared, &mut st, (&mut reader, &mut writer), &mut lb).await?;
            counters.quits.fetch_add(1, Relaxed);
        } else {
            drop((reader, writer));
            counters.closes.fetch_add(1, Relaxed);
        }
    }
    counters.absorb(name, &st);
    result
}

/// Sends `QUIT`, then reads (and checks) what was still queued until the
/// server closes the connection (over WebSocket, with close code 1000).
async fn leave_by_quit(
    shared: &Shared,
    st: &mut MemberStats,
    (reader, writer): (&mut Reader, &mut Writer),
    lb: &mut LineBuf,
) -> Result<(), String> {
    writer
        .write_all(b"QUIT\n")
        .await
        .map_err(|e| format!("write QUIT: {e}"))?;
    let deadline = Instant::now() + CLOSE;
    loop {
        while let Some(line) = lb.next_line() {
            st.lines += 1;
            check(shared, st, line, false);
        }
        match timeout_at(deadline.into(), lb.fill(reader)).await {
            Ok(Ok(0)) => {
                return match reader.close_code() {
                    Some(code) if code != 1000 => {
                        Err(format!("closed with code {code} after QUIT, not 1000"))
                    }
                    _ => Ok(()),
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read after QUIT: {e}")),
            Err(_) => return Err("the server did not close the connection after QUIT".into()),
        }
    }
}

/// Checks one line of the room: payloads in order per sender (and none
/// before the member's own join), notices well-formed, nothing else.
fn check(shared: &Shared, st: &mut MemberStats, line: &[u8], before_own_join: bool) {
    match proto::classify(shared.args.proto, line) {
        Event::Data(_) if before_own_join => st.note_other(line),
        Event::Data(s) => {
            st.record(s, shared.now_ns());
        }
        Event::Join => st.note_join(line),
        Event::Leave => st.note_leave(line),
        _ => st.note_other(line),
    }
}
