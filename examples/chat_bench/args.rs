//! Command-line flags of chat_bench and their validation.

use crate::churn::ChurnArgs;
use crate::never_read::NeverReadArgs;
use crate::storm::StormArgs;
use crate::transport::Transport;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which wire protocol the server under test speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// chatcore's line protocol (docs/PROTOCOL.md).
    Chat,
    /// nats-server's text protocol: one subject as the room, one inbox per member.
    Nats,
}

/// When a flat-out public message stops counting against its sender's window.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// When the sender receives its own copy.
    Echo,
    /// When every member has received it: no member falls more than the
    /// window behind, whatever order the server writes in.
    All,
}

/// What the members do once connected.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Senders post public lines; every member receives every line.
    Public,
    /// Senders whisper to random other members; each message reaches one target.
    Private,
    /// Members only connect and hold.
    Idle,
    /// Connect storm: clients connect in bursts of --burst at once and wait
    /// for the server's first reply (chat: `NAME`; nats: the `PONG` to
    /// CONNECT+PING), then hold without joining.
    Storm,
    /// Soak: steady members chat (public lines and whispers, paced) while
    /// --churners members join and leave continuously; the server's RSS is
    /// sampled as it runs.
    Churn,
    /// Memory: --members members join and never read (small receive
    /// buffers) while one more member sends public lines flat out within
    /// --nr-window bytes and reads everything; the server's peak RSS is
    /// reported.
    NeverRead,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Chat => "chat",
            Proto::Nats => "nats",
        }
    }
}

impl Ack {
    pub fn name(self) -> &'static str {
        match self {
            Ack::Echo => "echo",
            Ack::All => "all",
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Public => "public",
            Mode::Private => "private",
            Mode::Idle => "idle",
            Mode::Storm => "storm",
            Mode::Churn => "churn",
            Mode::NeverRead => "never-read",
        }
    }
}

/// Load generator for chatcore's server, over TCP, TLS, WebSocket or
/// WebSocket over TLS (and for nats-server, for comparison).
///
/// Connects N members, lets S of them send, checks every delivery (lost,
/// duplicated, misordered) and reports throughput, latency and, given
/// --server-pid, the server's CPU time and memory. Loopback addresses only.
#[derive(Parser, Debug, Clone)]
#[command(name = "chat_bench")]
pub struct Args {
    /// Server address; must be a loopback address. Given several times
    /// (the nodes of one room across servers; public, private and idle
    /// modes), member i connects to the (i mod n)-th address, senders
    /// included, and public lines are also checked for one order: every
    /// member must see the same sequence.
    #[arg(long = "addr", value_name = "ADDR", default_value = "127.0.0.1:12345")]
    pub addrs: Vec<SocketAddr>,
    /// Wire protocol of the server.
    #[arg(long, value_enum, default_value_t = Proto::Chat)]
    pub proto: Proto,
    /// Transport of the chat protocol (PROTOCOL.md, "Transports"): lines
    /// over TCP or TLS, or WebSocket on /ws (one text message per line).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// TLS (tls, wss): trust only the certificates of this PEM file (the
    /// server's --tls-cert, say); without it any certificate is accepted.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// TLS: the name the certificate must be for (default: the IP of --addr).
    #[arg(long)]
    pub tls_name: Option<String>,
    /// What the members do.
    #[arg(long, value_enum, default_value_t = Mode::Public)]
    pub mode: Mode,
    /// Number of members to connect.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Number of members that send (the first S); ignored in idle mode.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second per sender; omit to send flat out.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Flat out: most messages in flight per sender.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Flat out, public mode: what completes a message in flight (private
    /// mode: always its receipt at the target).
    #[arg(long, value_enum, default_value_t = Ack::Echo)]
    pub ack: Ack,
    /// Payload size in bytes (the header is never cut).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds of sending (idle mode: seconds of holding).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Seconds allowed for every member to join.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Seconds allowed, after the last join, for every join line to arrive.
    #[arg(long, default_value_t = 120.0)]
    pub settle_timeout: f64,
    /// Seconds allowed, after the senders stop, for outstanding deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Pid of the server, to report its CPU time and memory from /proc.
    /// Given several times (public, private and idle modes), the figures
    /// are the sums over those processes (say, every node and nats-server).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Member names are this prefix followed by the member's index.
    #[arg(long, default_value = "b")]
    pub name_prefix: String,
    /// Read buffer per member in bytes (default: 64 KiB, 8 KiB in idle mode).
    #[arg(long)]
    pub read_buf: Option<usize>,
    #[command(flatten)]
    pub storm: StormArgs,
    #[command(flatten)]
    pub churn: ChurnArgs,
    #[command(flatten)]
    pub never_read: NeverReadArgs,
}

impl Args {
    /// Checks the flags against each other; the message says what is wrong.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.addrs.is_empty() {
            return Err("--addr is needed".into());
        }
        if let Some(addr) = self.addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "--addr {addr} is not a loopback address; chat_bench only targets this machine"
            ));
        }
        let run_mode = matches!(self.mode, Mode::Public | Mode::Private | Mode::Idle);
        if self.addrs.len() > 1 && !(run_mode && self.proto == Proto::Chat) {
            return Err(
                "several --addr need --proto chat and --mode public, private or idle".into(),
            );
        }
        if self.server_pids.len() > 1 && !run_mode {
            return Err("several --server-pid need --mode public, private or idle".into());
        }
        if self.members == 0 {
            return Err("--members must be at least 1".into());
        }
        if self.transport != Transport::Tcp && self.proto != Proto::Chat {
            return Err("--transport other than tcp needs --proto chat".into());
        }
        if !self.transport.is_tls() && (self.tls_ca.is_some() || self.tls_name.is_some()) {
            return Err("--tls-ca and --tls-name need --transport tls or wss".into());
        }
        if matches!(self.mode, Mode::Idle | Mode::Storm | Mode::NeverRead) {
            self.senders = 0;
        }
        if self.senders > self.members {
            return Err("--senders cannot exceed --members".into());
        }
        if self.mode == Mode::Private && self.members < 2 {
            return Err("private mode needs at least 2 members".into());
        }
        if !matches!(self.mode, Mode::Idle | Mode::Storm | Mode::NeverRead) && self.senders == 0 {
            return Err("--senders must be at least 1 outside idle mode".into());
        }
        if self.window == 0 {
            return Err("--window must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number".into());
            }
        }
        for (name, v) in [
            ("--duration", self.duration),
            ("--connect-timeout", self.connect_timeout),
            ("--settle-timeout", self.settle_timeout),
            ("--drain-timeout", self.drain_timeout),
        ] {
            if !(v.is_finite() && (0.0..=86_400.0).contains(&v)) {
                return Err(format!("{name} must be between 0 and 86400 seconds"));
            }
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.name_prefix.is_empty()
            || self.name_prefix.starts_with('\\')
            || self
                .name_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ":(),".contains(c))
            || self.name_prefix.chars().count() + 5 > 32
        {
            return Err(
                "--name-prefix must be 1 to 27 characters, no spaces, none of : ( ) , \
                 and not start with '\\'"
                    .into(),
            );
        }
        if self.read_buf.is_some_and(|n| n < 8192) {
            return Err("--read-buf must be at least 8192".into());
        }
        self.storm.validate(self.mode)?;
        if self.mode == Mode::NeverRead {
            self.never_read.validate(self.proto)?;
            if self.transport != Transport::Tcp {
                return Err("--mode never-read runs over --transport tcp only".into());
            }
        }
        self.churn.validate(
            self.mode,
            self.proto,
            self.members,
            self.rate,
            &self.name_prefix,
        )
    }

    /// The (first) server address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// How many nodes the members are spread over (one per `--addr`).
    pub fn nodes(&self) -> usize {
        self.addrs.len()
    }

    /// The node (index into `--addr`) member `idx` connects to.
    pub fn node_of(&self, idx: usize) -> usize {
        idx % self.addrs.len()
    }

    /// The (first) `--server-pid`.
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pids.first().copied()
    }

    /// Whether every member's sequence of public lines is checked against
    /// the others' (several nodes, public mode).
    pub fn check_order(&self) -> bool {
        self.nodes() > 1 && self.mode == Mode::Public
    }

    /// Whether public messages complete only once every member has them.
    pub fn ack_all(&self) -> bool {
        self.flat_out() && self.mode == Mode::Public && self.ack == Ack::All
    }

    /// Whether senders are flat out (window-bounded) rather than paced.
    pub fn flat_out(&self) -> bool {
        self.rate.is_none()
    }

    /// Bytes of read buffer per member.
    pub fn read_buf_bytes(&self) -> usize {
        self.read_buf.unwrap_or(match self.mode {
            Mode::Idle => 8 * 1024,
            _ => 64 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix_accepted(prefix: &str) -> bool {
        let mut args =
            Args::try_parse_from(["chat_bench", "--name-prefix", prefix]).expect("the flags parse");
        args.validate().is_ok()
    }

    fn validated(flags: &[&str]) -> Result<Args, String> {
        let mut args = Args::try_parse_from(flags).map_err(|e| e.to_string())?;
        args.validate().map(|()| args)
    }

    #[test]
    fn several_addrs_spread_the_members_round_robin() {
        let args = validated(&[
            "chat_bench",
            "--addr",
            "127.0.0.1:1",
            "--addr",
            "127.0.0.1:2",
            "--addr",
            "[::1]:3",
        ])
        .expect("valid");
        assert_eq!(args.nodes(), 3);
        assert_eq!(args.addr(), "127.0.0.1:1".parse().unwrap());
        let nodes: Vec<usize> = (0..5).map(|i| args.node_of(i)).collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1]);
        assert!(args.check_order(), "public mode over several nodes");
        let one = validated(&["chat_bench"]).expect("valid");
        assert_eq!((one.nodes(), one.check_order()), (1, false));
        assert_eq!(one.addr(), "127.0.0.1:12345".parse().unwrap());
    }

    #[test]
    fn several_addrs_are_refused_where_they_cannot_work() {
        let two = ["--addr", "127.0.0.1:1", "--addr", "127.0.0.1:2"];
        for extra in [
            &["--mode", "storm"][..],
            &["--mode", "churn", "--rate", "10", "--members", "200"],
            &["--mode", "never-read"],
            &["--proto", "nats"],
        ] {
            let flags: Vec<&str> = ["chat_bench"]
                .iter()
                .chain(&two)
                .chain(extra)
                .copied()
                .collect();
            assert!(validated(&flags).is_err(), "{extra:?}");
        }
        let far = [
            "chat_bench",
            "--addr",
            "127.0.0.1:1",
            "--addr",
            "192.0.2.1:2",
        ];
        assert!(
            validated(&far).is_err(),
            "a non-loopback address among several"
        );
        let pids = [
            "chat_bench",
            "--mode",
            "storm",
            "--server-pid",
            "1",
            "--server-pid",
            "2",
        ];
        assert!(validated(&pids).is_err());
    }

    #[test]
    fn name_prefix_follows_the_protocol_name_rules() {
        for prefix in ["b", "Ñandú", "o\\o", &"a".repeat(27)] {
            assert!(prefix_accepted(prefix), "{prefix:?}");
        }
        for prefix in [
            "",
            "a b",
            "\\b",
            "b:",
            "priv(",
            "b)",
            "a,b",
            &"a".repeat(28),
        ] {
            assert!(!prefix_accepted(prefix), "{prefix:?}");
        }
    }
}
