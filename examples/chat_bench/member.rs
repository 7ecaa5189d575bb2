//! One member: connect, handshake, then read and check every line until told
//! to stop. The first S members also start a sender task.

use crate::args::{Mode, Proto};
use crate::linebuf::LineBuf;
use crate::proto::{self, Event};
use crate::sender;
use crate::shared::Shared;
use crate::stats::{self, lock, LatencyRun, MemberStats};
use crate::transport::{self, Reader};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;
use tokio::sync::Mutex;

/// The write half, shared by the sender task and the reader (NATS `PONG`).
/// It must stay alive until the end: dropping it half-closes a TCP
/// connection, which a chat server takes as leaving.
pub type Writer = Arc<Mutex<transport::Writer>>;

/// Runs member `idx`: joins, then reads until the connection ends. The
/// orchestrator aborts the task to stop it, so what the member saw lives in
/// `stats`, locked once per read.
pub async fn run(
    shared: Arc<Shared>,
    idx: usize,
    connect_deadline: Instant,
    stats: Arc<StdMutex<MemberStats>>,
) {
    let joined = {
        let _permit = shared
            .connect_gate
            .acquire()
            .await
            .expect("gate never closed");
        tokio::time::timeout_at(connect_deadline.into(), join(&shared, idx, &stats)).await
    };
    let (rd, wr, lb) = match joined {
        Ok(Ok(parts)) => parts,
        Ok(Err(why)) => {
            shared.note_failed(format!("member {idx}: {why}"));
            return;
        }
        Err(_) => {
            shared.note_failed(format!("member {idx}: timed out joining"));
            return;
        }
    };
    lock(&stats).joined = true;
    shared.note_joined();
    let wr: Writer = Arc::new(Mutex::new(wr));
    if idx < shared.args.senders {
        tokio::spawn(sender::run(shared.clone(), idx, wr.clone()));
    }
    let why = read_loop(&shared, idx, rd, &wr, lb, &stats).await;
    lock(&stats).closed_early = Some(why);
    shared.live[idx].closed.store(true, Relaxed);
}

/// Connects (over `--transport`) and completes the protocol's handshake.
/// Returns the halves and the read buffer, which may already hold lines
/// that follow the handshake.
async fn join(
    shared: &Shared,
    idx: usize,
    stats: &StdMutex<MemberStats>,
) -> Result<(Reader, transport::Writer, LineBuf), String> {
    let node = shared.args.node_of(idx);
    let (mut rd, mut wr) = shared.connector.connect_to(node, &mut None).await?;
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
            lock(stats).lines += 1;
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

/// How receipts feed the senders' windows.
#[derive(Copy, Clone, PartialEq, Eq)]
enum AckMode {
    /// Paced senders, or idle: no window.
    Off,
    /// Public, `--ack echo`: a sender's own copy frees a permit.
    Echo,
    /// Private: receipt at the target frees a permit.
    Target,
    /// Public, `--ack all`: publish what this member has received; the
    /// sender waits for the slowest member.
    All,
}

/// Per read batch, the senders heard from and how many of their messages.
struct Acks {
    mode: AckMode,
    counts: Vec<u32>,
    touched: Vec<usize>,
}

impl Acks {
    fn new(mode: AckMode, senders: usize) -> Self {
        Acks {
            mode,
            counts: vec![0; senders],
            touched: Vec::with_capacity(senders),
        }
    }

    /// Notes a payload from `sender` received by member `me`.
    #[inline]
    fn add(&mut self, sender: usize, me: usize) {
        match self.mode {
            AckMode::Off => return,
            AckMode::Echo if sender != me => return,
            _ => {}
        }
        if let Some(c) = self.counts.get_mut(sender) {
            if *c == 0 {
                self.touched.push(sender);
            }
            *c += 1;
        }
    }

    fn flush(&mut self, shared: &Shared, me: usize, stats: &MemberStats) {
        let senders = self.counts.len();
        for &s in &self.touched {
            let sender = &shared.senders[s];
            if self.mode == AckMode::All {
                shared.received[me * senders + s].store(stats.last_seq(s), Relaxed);
                sender.progress.notify_one();
            } else {
                sender.window.add_permits(self.counts[s] as usize);
            }
            self.counts[s] = 0;
        }
        self.touched.clear();
    }
}

/// Reads until the connection ends, checking every payload and publishing
/// live counts after each read. Returns why it ended.
async fn read_loop(
    shared: &Shared,
    idx: usize,
    mut rd: Reader,
    wr: &Writer,
    mut lb: LineBuf,
    stats: &StdMutex<MemberStats>,
) -> String {
    let proto = shared.args.proto;
    // Public mode acknowledges a sender's message when its own echo comes
    // back; private mode when the target receives it.
    let ack_mode = match (shared.acks(), shared.args.mode) {
        (true, Mode::Public) if shared.args.ack_all() => AckMode::All,
        (true, Mode::Public) => AckMode::Echo,
        (true, Mode::Private) => AckMode::Target,
        _ => AckMode::Off,
    };
    let mut acks = Acks::new(ack_mode, shared.args.senders);
    let live = &shared.live[idx];
    // Several nodes: deliveries from a sender on another node are also
    // timed apart.
    let nodes = shared.args.nodes();
    let my_node = shared.args.node_of(idx);
    // The handshake may have left lines in the buffer: handle them first.
    let mut read = false;
    loop {
        if read {
            match lb.fill(&mut rd).await {
                Ok(0) => return "server closed the connection".into(),
                Ok(_) => {}
                Err(e) => return format!("read: {e}"),
            }
        }
        read = true;
        let now_ns = shared.now_ns();
        let mut pongs = 0;
        {
            let mut guard = lock(stats);
            let st = &mut *guard;
            st.reads += 1;
            stats::with_latencies(|hists| {
                let mut latencies = LatencyRun::new(&mut hists.all);
                let mut cross = LatencyRun::new(&mut hists.cross);
                while let Some(line) = lb.next_line() {
                    st.lines += 1;
                    match proto::classify(proto, line) {
                        Event::Data(s) => {
                            if let Some(us) = st.record(s, now_ns) {
                                latencies.add(us);
                                if nodes > 1 && shared.args.node_of(s.sender as usize) != my_node {
                                    cross.add(us);
                                }
                                acks.add(s.sender as usize, idx);
                            }
                        }
                        Event::Join => st.note_join(line),
                        Event::Leave => st.note_leave(line),
                        Event::Ping => pongs += 1,
                        Event::Frame | Event::Pong => {}
                        Event::Other => st.note_other(line),
                    }
                }
            });
            live.deliveries.store(st.deliveries, Relaxed);
            live.joins.store(st.joins, Relaxed);
            live.errors.store(st.errors(), Relaxed);
            acks.flush(shared, idx, st);
        }
        for _ in 0..pongs {
            if let Err(e) = wr.lock().await.write_all(b"PONG\r\n").await {
                return format!("write: {e}");
            }
        }
    }
}
