//! The chat server: lines over TCP, and the same room over TLS, WebSocket
//! and WebSocket over TLS when asked.
//!
//! ```text
//! cargo run --example tcp_server -- [--addr <host:port>] [--max-clients <n>]
//!     [--max-line <bytes>] [--queue-bytes <bytes>] [--name-timeout <seconds>]
//!     [--io events|threads] [--loops <n>] [--backlog <n>]
//!     [--tls-addr <host:port>] [--ws-addr <host:port>] [--wss-addr <host:port>]
//!     [--tls-cert <file> --tls-key <file>] [--history <n>]
//!     [--nats <url> [--room <name>]]
//! ```
//!
//! With `--nats` (built with `--features nats`), the server is one node of
//! the room `--room` (default `chat`) shared by every server on that NATS
//! server: `cargo run --features nats --example tcp_server -- --nats
//! nats://127.0.0.1:4222 --room lobby`. NATS unreachable at start, or an
//! invalid room name: exit status 1. Cut off from NATS for longer than 5 s:
//! it shuts down as on SIGTERM and exits with status 1.
//!
//! Prints `Server listening on <ip>:<port>` (the TCP line listener) as its
//! first line on standard output, then one line per extra listener, in this
//! order: `TLS listening on <ip>:<port>`, `WebSocket listening on
//! <ip>:<port>`, `Secure WebSocket listening on <ip>:<port>`. A browser chat
//! page is served on `/` of the WebSocket ports (`http://` for `--ws-addr`,
//! `https://` for `--wss-addr`). Logs go to standard error (`RUST_LOG=debug`
//! for more). Ctrl-C (SIGINT) and SIGTERM shut it down cleanly.
//!
//! The TLS listeners (`--tls-addr`, `--wss-addr`) use the PEM certificate
//! chain and private key of `--tls-cert` and `--tls-key` (both or neither);
//! without them, a self-signed certificate for `localhost` and `127.0.0.1`
//! is made at start and its SHA-256 fingerprint logged. A certificate or key
//! that cannot be read or does not match, like any other error at start,
//! is reported on standard error with exit status 1, before anything is
//! bound.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chatcore::server::Listener;
use chatcore::{Server, ServerConfig, TcpTransport};
use clap::{Parser, ValueEnum};
use room::{RoomArgs, ServerRoom};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[path = "tcp_server/room.rs"]
mod room;

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
    /// Also serve lines over TLS on this address.
    #[arg(long, value_name = "HOST:PORT")]
    tls_addr: Option<String>,
    /// Also serve WebSocket (and the chat page on `http://`) on this address.
    #[arg(long, value_name = "HOST:PORT")]
    ws_addr: Option<String>,
    /// Also serve WebSocket over TLS (and the page on `https://`) here.
    #[arg(long, value_name = "HOST:PORT")]
    wss_addr: Option<String>,
    /// The TLS certificate chain, PEM, the server's own first (needs
    /// --tls-key; default: a self-signed one for localhost, made at start).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key, PEM (needs --tls-cert).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    room: RoomArgs,
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
    // Everything that can be wrong with the certificate is found before
    // anything is bound.
    let tls = match tls_config(&args) {
        Ok(tls) => tls,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let transport = match bind(&args.addr, "--addr", args.backlog) {
        Ok(transport) => transport,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match extra_listeners(&args, tls.as_ref()) {
        Ok(listeners) => listeners,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let room = match ServerRoom::open(&args.room) {
        Ok(room) => room,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = Server::with_room(transport, config, room.room());
    for listener in listeners {
        server.add_listener(listener);
    }

    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            log::error!("cannot handle signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    room.shut_down_on_failure(server.shutdown_handle());
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
    for listener in server.listeners() {
        let _ = writeln!(
            stdout,
            "{} listening on {}",
            listener.label(),
            listener.local_addr()
        );
    }
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
    let room_ok = room.finish();
    match result {
        Ok(()) if room_ok => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(error) => {
            log::error!("{}", with_causes(&error));
            ExitCode::FAILURE
        }
    }
}

/// Binds a TCP listener on `addr` (given with `flag`), with the listen
/// backlog asked for or the system's maximum.
fn bind(addr: &str, flag: &str, backlog: Option<u32>) -> Result<TcpTransport, String> {
    let bound = match backlog {
        Some(backlog) => TcpTransport::bind_with_backlog(addr, backlog),
        None => TcpTransport::bind(addr),
    };
    bound.map_err(|error| format!("cannot listen on {addr} ({flag}): {error}"))
}

/// The TLS configuration of the TLS listeners.
#[cfg(feature = "tls")]
type TlsConfig = std::sync::Arc<rustls::ServerConfig>;
/// Without the `tls` feature there is none.
#[cfg(not(feature = "tls"))]
type TlsConfig = std::convert::Infallible;

/// The TLS configuration, when a TLS listener (`--tls-addr`, `--wss-addr`)
/// is asked for: the certificate of `--tls-cert` and `--tls-key`, or a
/// self-signed one made now, whose fingerprint is logged.
fn tls_config(args: &Args) -> Result<Option<TlsConfig>, String> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(_), None) => {
            return Err("--tls-cert needs --tls-key, the certificate's private key".into())
        }
        (None, Some(_)) => return Err("--tls-key needs --tls-cert, the key's certificate".into()),
        _ => {}
    }
    let wanted = args.tls_addr.is_some() || args.wss_addr.is_some();
    #[cfg(feature = "tls")]
    {
        use chatcore::transport::tls::TlsCertificate;

        let certificate = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let certificate =
                    TlsCertificate::load_pem(cert, key).map_err(|error| with_causes(&error))?;
                log::info!(
                    "TLS certificate {}: SHA-256 fingerprint {}",
                    cert.display(),
                    certificate.fingerprint()
                );
                certificate
            }
            _ if wanted => {
                let certificate =
                    TlsCertificate::self_signed().map_err(|error| with_causes(&error))?;
                log::info!(
                    "TLS certificate: self-signed for localhost and 127.0.0.1, \
                     SHA-256 fingerprint {}",
                    certificate.fingerprint()
                );
                certificate
            }
            _ => return Ok(None),
        };
        if !wanted {
            log::warn!("--tls-cert and --tls-key are unused without --tls-addr or --wss-addr");
            return Ok(None);
        }
        let config = certificate
            .server_config()
            .map_err(|error| with_causes(&error))?;
        Ok(Some(config))
    }
    #[cfg(not(feature = "tls"))]
    {
        if wanted || args.tls_cert.is_some() {
            return Err("TLS needs the crate's feature `tls`, which this build lacks".into());
        }
        Ok(None)
    }
}

/// Binds the extra listeners asked for, in the order their lines are
/// printed: TLS, WebSocket, secure WebSocket.
fn extra_listeners(args: &Args, tls: Option<&TlsConfig>) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    if let Some(addr) = &args.tls_addr {
        let transport = bind(addr, "--tls-addr", args.backlog)?;
        listeners.push(tls_listener(transport, tls)?);
    }
    if let Some(addr) = &args.ws_addr {
        let transport = bind(addr, "--ws-addr", args.backlog)?;
        listeners.push(ws_listener(transport)?);
    }
    if let Some(addr) = &args.wss_addr {
        let transport = bind(addr, "--wss-addr", args.backlog)?;
        listeners.push(wss_listener(transport, tls)?);
    }
    Ok(listeners)
}

/// Lines over TLS.
fn tls_listener(transport: TcpTransport, tls: Option<&TlsConfig>) -> Result<Listener, String> {
    #[cfg(feature = "tls")]
    if let Some(config) = tls {
        return Ok(Listener::tls(transport, config.clone()));
    }
    let _ = (transport, tls);
    Err("--tls-addr needs the crate's feature `tls`, which this build lacks".into())
}

/// WebSocket and the chat page.
fn ws_listener(transport: TcpTransport) -> Result<Listener, String> {
    #[cfg(feature = "websocket")]
    return Ok(Listener::ws(transport));
    #[cfg(not(feature = "websocket"))]
    {
        let _ = transport;
        Err("--ws-addr needs the crate's feature `websocket`, which this build lacks".into())
    }
}

/// WebSocket over TLS and the chat page, offering HTTP/1.1 in ALPN (what
/// a browser asking for HTTP/2 too then agrees on).
fn wss_listener(transport: TcpTransport, tls: Option<&TlsConfig>) -> Result<Listener, String> {
    #[cfg(all(feature = "tls", feature = "websocket"))]
    if let Some(config) = tls {
        let mut config = rustls::ServerConfig::clone(config);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        return Ok(Listener::wss(transport, std::sync::Arc::new(config)));
    }
    let _ = (transport, tls);
    Err(
        "--wss-addr needs the crate's features `tls` and `websocket`, which this build lacks"
            .into(),
    )
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
