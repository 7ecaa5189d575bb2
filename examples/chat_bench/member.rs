//! One member: connect, handshake, then read and check every line until told
//! to stop. The first S members also start a sender task.

use crate::args::{Mode, Proto};
use crate::linebuf::LineBuf;
use crate::proto::{self, Event};
use crate::sender;
use crate::shared::Shared;
use crate::stats::MemberStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The write half, shared by the sender task and the reader (NATS `PONG`).
/// It must stay alive until the end: dropping it half-closes the connection,
/// which a chat server takes as leaving.
pub type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// Runs member `idx` to the end and hands back what it saw.
pub async fn run(shared: Arc<Shared>, idx: usize, connect_deadline: Instant) -> MemberStats {
    let mut stats = MemberStats::new(shared.args.senders);
    let joined = {
        let _permit = shared
            .connect_gate
            .acquire()
            .await
            .expect("gate never closed");
        tokio::time::timeout_at(connect_deadline.into(), join(&shared, idx, &mut stats)).await
    };
    let (rd, wr, lb) = match joined {
        Ok(Ok(parts)) => parts,
        Ok(Err(why)) => {
            shared.note_failed(format!("member {idx}: {why}"));
            return stats;
        }
        Err(_) => {
            shared.note_failed(format!("member {idx}: timed out joining"));
            return stats;
        }
    };
    stats.joined = true;
    shared.note_joined();
    let wr: Writer = Arc::new(Mutex::new(wr));
    if idx < shared.args.senders {
        tokio::spawn(sender::run(shared.clone(), idx, wr.clone()));
    }
    read_loop(&shared, idx, rd, &wr, lb, &mut stats).await;
    if stats.closed_early.is_some() {
        shared.live[idx].closed.store(true, Relaxed);
    }
    stats
}

/// Connects and completes the protocol's handshake. Returns the halves and
/// the read buffer, which may already hold lines that follow the handshake.
async fn join(
    shared: &Shared,
    idx: usize,
    stats: &mut MemberStats,
) -> Result<(OwnedReadHalf, OwnedWriteHalf, LineBuf), String> {
    let stream = TcpStream::connect(shared.args.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut lb = LineBuf::new(shared.args.read_buf_bytes());
    let args = &shared.args;
    let (greeting, reply, done): (&[u8], Vec<u8>, Vec<u8>) = match args.proto {
        Proto::Chat => {
            let name = proto::member_name(&args.name_prefix, idx);
            (
                b"NAME",
                format!("{name}\n").into_bytes(),
                format!("Welcome to the chat, {name}!").into_bytes(),
            )
        }
        Proto::Nats => {
            let subject = proto::nats_subject(args.mode == Mode::Private, idx);
            (
                b"INFO ",
                format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {subject} 1\r\nPING\r\n"
                )
                .into_bytes(),
                b"PONG".to_vec(),
            )
        }
    };
    let mut greeted = false;
    loop {
        while let Some(line) = lb.next_line() {
            stats.lines += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !greeted && line.starts_with(greeting) {
                greeted = true;
                wr.write_all(&reply)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            } else if greeted && line == done.as_slice() {
                return Ok((rd, wr, lb));
            } else if line != b"+OK" {
                return Err(format!(
                    "unexpected line in handshake: {}",
                    String::from_utf8_lossy(&line[..line.len().min(120)])
                ));
            }
        }
        match lb.fill(&mut rd).await {
            Ok(0) => return Err("server closed the connection during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Per read batch, window permits to give back to each sender.
struct Acks {
    counts: Vec<u32>,
    touched: Vec<usize>,
}

impl Acks {
    fn new(senders: usize) -> Self {
        Acks {
            counts: vec![0; senders],
            touched: Vec::with_capacity(senders),
        }
    }

    #[inline]
    fn add(&mut self, sender: usize) {
        if let Some(c) = self.counts.get_mut(sender) {
            if *c == 0 {
                self.touched.push(sender);
            }
            *c += 1;
        }
    }

    fn flush(&mut self, shared: &Shared) {
        for &s in &self.touched {
            shared.senders[s]
                .window
                .add_permits(self.counts[s] as usize);
            self.counts[s] = 0;
        }
        self.touched.clear();
    }
}

/// Reads until the stop signal or the end of the connection, checking every
/// payload and publishing live counts after each read.
async fn read_loop(
    shared: &Shared,
    idx: usize,
    mut rd: OwnedReadHalf,
    wr: &Writer,
    mut lb: LineBuf,
    stats: &mut MemberStats,
) {
    let proto = shared.args.proto;
    // Public mode acknowledges a sender's message when its own echo comes
    // back; private mode when the target receives it.
    let ack_mode = match (shared.acks(), shared.args.mode) {
        (true, Mode::Public) => Some(false),
        (true, Mode::Private) => Some(true),
        _ => None,
    };
    let mut acks = Acks::new(shared.args.senders);
    let mut stop = shared.stop.clone();
    let live = &shared.live[idx];
    let mut first = true;
    loop {
        if !first {
            if *stop.borrow() {
                return;
            }
            let r = tokio::select! {
                biased;
                r = lb.fill(&mut rd) => r,
                _ = stop.changed() => return,
            };
            match r {
                Ok(0) => {
                    stats.closed_early = Some("server closed the connection".into());
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    stats.closed_early = Some(format!("read: {e}"));
                    return;
                }
            }
        }
        first = false;
        stats.reads += 1;
        let now_ns = shared.now_ns();
        let mut pongs = 0;
        while let Some(line) = lb.next_line() {
            stats.lines += 1;
            match proto::classify(proto, line) {
                Event::Data(s) => {
                    if stats.record(s, now_ns) {
                        match ack_mode {
                            Some(true) => acks.add(s.sender as usize),
                            Some(false) if s.sender as usize == idx => acks.add(idx),
                            _ => {}
                        }
                    }
                }
                Event::Join => stats.joins += 1,
                Event::Leave => stats.leaves += 1,
                Event::Ping => pongs += 1,
                Event::Frame | Event::Pong => {}
                Event::Other => stats.note_other(line),
            }
        }
        live.deliveries.store(stats.deliveries, Relaxed);
        live.joins.store(stats.joins, Relaxed);
        acks.flush(shared);
        for _ in 0..pongs {
            if let Err(e) = wr.lock().await.write_all(b"PONG\r\n").await {
                stats.closed_early = Some(format!("write: {e}"));
                return;
            }
        }
    }
}
