//! `--mode storm`: a connect storm.
//!
//! `--members` clients connect in bursts of `--burst`: every client of a
//! burst starts its connect at the same moment, with no cap on handshakes in
//! progress. The next burst starts once every client of the previous one has
//! its reply (or failed), or after `--burst-wait` seconds, whichever comes
//! first. A client's reply is the server's first answer:
//! - chat: the `NAME` line the server sends on accept;
//! - nats: the `PONG` to the `CONNECT` and `PING` it sends after `INFO`.
//!
//! A client that has no reply `--storm-timeout` seconds after its burst
//! started is a straggler. Clients that get their reply then hold their
//! connection, without reading and without joining (a chat client never
//! sends a name), until every client is settled: the storm measures the
//! server's accept path, not its joins (scenario D measures those). Over
//! TLS and WebSocket the reply comes after their handshakes, which the
//! storm therefore measures too (the connect time is the TCP connect's).

mod report;

use crate::args::{Args, Mode, Proto};
use crate::linebuf::LineBuf;
use crate::procfs;
use crate::transport::{Connector, Reader, Writer};
use crate::wait::secs;
use clap::Args as ClapArgs;
pub use report::StormReport;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

/// The read buffer of a client in its handshake (`INFO` is under 1 KiB).
const READ_BUF: usize = 8 * 1024;
/// How long the last wait may outlast the last client's own deadline.
const GRACE: Duration = Duration::from_secs(2);

/// Flags of the storm mode.
#[derive(ClapArgs, Debug, Clone)]
pub struct StormArgs {
    /// Storm: clients that start connecting at the same moment.
    #[arg(long, default_value_t = 1000)]
    pub burst: usize,
    /// Storm: most seconds a burst waits for the previous one's replies.
    #[arg(long, default_value_t = 5.0)]
    pub burst_wait: f64,
    /// Storm: seconds a client waits for its reply before it counts as a
    /// straggler.
    #[arg(long, default_value_t = 30.0)]
    pub storm_timeout: f64,
}

impl StormArgs {
    /// Checks the storm flags (they are ignored in the other modes).
    pub fn validate(&self, mode: Mode) -> Result<(), String> {
        if mode != Mode::Storm {
            return Ok(());
        }
        if self.burst == 0 {
            return Err("--burst must be at least 1".into());
        }
        for (name, v) in [
            ("--burst-wait", self.burst_wait),
            ("--storm-timeout", self.storm_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3_600.0) {
                return Err(format!(
                    "{name} must be more than 0 and at most 3600 seconds"
                ));
            }
        }
        Ok(())
    }
}

/// How one client's storm ended.
pub enum ClientOutcome {
    /// It got its reply; `stream` is held open until the storm is over.
    Replied {
        connected: Duration,
        replied: Duration,
        at: Instant,
        conn: (Reader, Writer),
    },
    /// The connection failed or the server answered something else.
    Failed(String),
    /// No reply by its deadline; `connected` says whether its connect at
    /// least completed.
    Straggler { connected: bool },
}

/// Runs the storm and reports it.
pub async fn run(args: Args) -> Result<StormReport, String> {
    let st = &args.storm;
    let n = args.members;
    let mut report = StormReport::new(&args);
    let sample = || match args.server_pid() {
        Some(pid) => procfs::sample(Some(pid)).map(Some),
        None => Ok(None),
    };
    let server_before = sample()?;
    let connector = Arc::new(Connector::new(&args)?);

    let t0 = Instant::now();
    let mut set: JoinSet<(usize, ClientOutcome)> = JoinSet::new();
    let mut held: Vec<(Reader, Writer)> = Vec::with_capacity(n);
    let mut last_deadline = t0;
    let mut started = 0;
    while started < n {
        let count = st.burst.min(n - started);
        let start = Instant::now();
        let b = report.start_burst(start, count);
        let deadline = start + secs(st.storm_timeout);
        last_deadline = deadline;
        for _ in 0..count {
            let (connector, proto) = (connector.clone(), args.proto);
            set.spawn(async move { (b, client(&connector, proto, start, deadline).await) });
        }
        started += count;
        if started >= n {
            break;
        }
        let bound = start + secs(st.burst_wait);
        while !report.burst_settled(b) {
            match timeout_at(bound.into(), set.join_next()).await {
                Ok(Some(done)) => report.note(done, &mut held),
                Ok(None) | Err(_) => break,
            }
        }
    }
    // The last burst, and the stragglers of earlier ones: each client ends by
    // its own deadline, so this wait is bounded.
    let end = last_deadline + GRACE;
    while let Ok(Some(done)) = timeout_at(end.into(), set.join_next()).await {
        report.note(done, &mut held);
    }
    // Anything still running past every deadline counts as a straggler.
    report.stragglers += set.len();
    set.abort_all();
    report.finish(t0);
    let server_after = sample()?;
    if let (Some(before), Some(after)) = (server_before, server_after) {
        report.server = Some((before, after));
    }
    report.loader_rss_kib = procfs::sample(None)?.rss_kib;
    // Every reply is in: close the connections only now.
    drop(held);
    Ok(report)
}

/// One client: connect, wait for the server's first reply, until `deadline`.
async fn client(
    connector: &Connector,
    proto: Proto,
    start: Instant,
    deadline: Instant,
) -> ClientOutcome {
    let mut connected = None;
    match timeout_at(deadline.into(), handshake(connector, proto, &mut connected)).await {
        Ok(Ok(conn)) => {
            let at = Instant::now();
            ClientOutcome::Replied {
                connected: connected.unwrap_or(at) - start,
                replied: at - start,
                at,
                conn,
            }
        }
        Ok(Err(why)) => ClientOutcome::Failed(why),
        Err(_) => ClientOutcome::Straggler {
            connected: connected.is_some(),
        },
    }
}

/// Connects and reads until the reply; sets `connected` once the TCP
/// connect completes.
async fn handshake(
    connector: &Connector,
    proto: Proto,
    connected: &mut Option<Instant>,
) -> Result<(Reader, Writer), String> {
    let (mut reader, mut writer) = connector.connect(connected).await?;
    let mut lb = LineBuf::new(READ_BUF);
    loop {
        while let Some(line) = lb.next_line() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match proto {
                Proto::Chat if line == b"NAME" => return Ok((reader, writer)),
                Proto::Nats if line.starts_with(b"INFO ") => {
                    writer
                        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                }
                Proto::Nats if line == b"PONG" => return Ok((reader, writer)),
                Proto::Nats if line == b"+OK" || line == b"PING" => {}
                _ => {
                    return Err(format!(
                        "unexpected line: {}",
                        String::from_utf8_lossy(&line[..line.len().min(120)])
                    ))
                }
            }
        }
        match lb.fill(&mut reader).await {
            Ok(0) => return Err("server closed the connection before its reply".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
