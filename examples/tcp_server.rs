//! The chat server over std TCP.
//!
//! ```text
//! cargo run --example tcp_server -- [--addr <host:port>] [--max-clients <n>]
//!     [--max-line <bytes>] [--queue-bytes <bytes>] [--name-timeout <seconds>]
//!     [--io events|threads] [--loops <n>] [--backlog <n>] [--history <n>]
//! ```
//!
//! Prints `Server listening on <ip>:<port>` as its first line on standard
//! output and logs to standard error (`RUST_LOG=debug` for more). Ctrl-C
//! (SIGINT) and SIGTERM shut it down cleanly.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chatcore::{ChatRoom, Server, ServerConfig, TcpTransport};
use clap::{Parser, ValueEnum};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A line-based chat server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:12345")]
    addr: String,
    /// Open connections at most, in the handshake or not.
    #[arg(long, default_value_t = chatcore::server::DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// The longest client line, in bytes.
    #[arg(long, default_value_t = chatcore::protocol::DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Pending bytes per member before it is dropped as a slow consumer.
    #[arg(long, default_value_t = chatcore::outbox::DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// Seconds a connection has to send an acceptable name.
    #[arg(long, default_value_t = chatcore::server::DEFAULT_NAME_TIMEOUT.as_secs())]
    name_timeout: u64,
    /// How connections are driven: event loops, or two threads each.
    #[arg(long, value_enum, default_value_t = Io::Events)]
    io: Io,
    /// Event loops with `--io events` (0: one per core).
    #[arg(long, default_value_t = 0)]
    loops: usize,
    /// Connections waiting to be accepted at most (the listen backlog);
    /// the kernel caps it (Linux: net.core.somaxconn). Default: the
    /// system's maximum, so that a burst of clients connecting at once is
    /// not dropped.
    #[arg(long)]
    backlog: Option<u32>,
    /// Public lines replayed to each newcomer, right after its welcome.
    #[arg(long, default_value_t = 0)]
    history: usize,
}

/// How the server drives its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Io {
    /// A few event loops over non-blocking sockets (epoll).
    Events,
    /// A reader and a writer thread per connection.
    Threads,
}

/// File descriptors kept free for the listener, logs and the like.
const RESERVED_FDS: u64 = 32;

/// Raises the open-file soft limit to the hard limit, and logs how many
/// members that leaves room for.
fn log_capacity(max_clients: usize, io: Io) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            log::warn!("cannot raise the open-file limit: {error}");
            return;
        }
    };
    // The threaded driver holds two descriptors per connection (one per
    // half); the event loops hold one.
    let per_connection = match io {
        Io::Events => 1,
        Io::Threads => 2,
    };
    let room = limit.saturating_sub(RESERVED_FDS) / per_connection;
    let capacity = room.min(max_clients as u64);
    log::info!("open-file limit {limit}: room for {capacity} connections");
    if room < max_clients as u64 {
        log::warn!(
            "--max-clients {max_clients} is more than the open-file limit allows; \
             past {room} connections, accepts fail and are retried"
        );
    }
}

/// Logs the listen backlog in force, and whether the system capped the
/// one asked for.
fn log_backlog(transport: &TcpTransport, asked: Option<u32>) {
    match (transport.backlog(), asked) {
        (Some(backlog), Some(asked)) if backlog < asked => {
            log::warn!("listen backlog {backlog}: --backlog {asked} is more than the system allows")
        }
        (Some(backlog), Some(_)) => log::info!("listen backlog {backlog}"),
        (Some(backlog), None) => log::info!("listen backlog {backlog} (the system's maximum)"),
        (None, _) => log::info!("listen backlog: the system's maximum"),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let args = Args::parse();

    let config = ServerConfig::default()
        .max_clients(args.max_clients)
        .max_line(args.max_line)
        .queue_bytes(args.queue_bytes)
        .name_timeout(Duration::from_secs(args.name_timeout));
    if let Err(error) = config.validate() {
        log::error!("{error}");
        return ExitCode::FAILURE;
    }
    let bound = match args.backlog {
        Some(backlog) => TcpTransport::bind_with_backlog(&args.addr, backlog),
        None => TcpTransport::bind(&args.addr),
    };
    let transport = match bound {
        Ok(transport) => transport,
        Err(error) => {
            log::error!("cannot listen on {}: {error}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let room = std::sync::Arc::new(ChatRoom::with_history(args.history));
    let server = Server::with_room(transport, config, room);

    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            log::error!("cannot handle signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = server.shutdown_handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            log::info!("signal {signal} received");
            shutdown.trigger();
        }
    });

    log_backlog(server.transport(), args.backlog);
    log_capacity(args.max_clients, args.io);

    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "Server listening on {}",
        server.transport().local_addr()
    );
    let _ = stdout.flush();
    log::info!(
        "limits: {} clients, {}-byte lines, {}-byte queues, {} s to name",
        args.max_clients,
        args.max_line,
        args.queue_bytes,
        args.name_timeout
    );

    let result = match args.io {
        Io::Events => server.run_event_loops(args.loops),
        Io::Threads => server.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{}", with_causes(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and each of its sources, joined with ": ".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
