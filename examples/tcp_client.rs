//! A chat client over std TCP.
//!
//! ```text
//! cargo run --example tcp_client -- [--addr <host:port>] [--name <name>]
//! ```
//!
//! Asks on standard input for whatever is missing (`Enter server IP
//! address:`, `Enter server port:`, `Enter your name:`), answers the
//! server's `NAME` itself, prints every line the server sends on standard
//! output exactly as received, sends every line typed once it has joined,
//! and sends `QUIT` when standard input ends. It exits with status 0 when
//! the server closes the connection. A taken or invalid name is asked for
//! again, unless it came from `--name`: then the client exits with status 1.
//! Works with piped input: no line is read from standard input before it is
//! needed, so a rejected name takes the next line as the new name.
//!
//! One thread reads the socket, prints its lines and reports the handshake
//! events over a channel; the main thread reads standard input according to
//! the state of the handshake. Diagnostics go to standard error.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use clap::Parser;

/// A line-based chat client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server's address, `<host>:<port>` (asked for when missing).
    #[arg(long)]
    addr: Option<String>,
    /// The name to join as (asked for when missing). If the server rejects
    /// it, the client exits with status 1.
    #[arg(long)]
    name: Option<String>,
}

/// What the socket reader reports to the main thread during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The server sent `NAME`.
    NameAsked,
    /// The server rejected the name (invalid or taken).
    NameRejected,
    /// The server welcomed us: the handshake is over.
    Welcome,
}

/// Where the name to send next comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameSource {
    /// `--name`: a rejection ends the client.
    Flag,
    /// Standard input: a rejection asks for another name.
    Stdin,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stdin = io::stdin();
    let mut input = stdin.lock();

    let Some(addr) = args.addr.or_else(|| ask_address(&mut input)) else {
        eprintln!("standard input ended before a server address was given");
        return ExitCode::FAILURE;
    };
    let source = if args.name.is_some() {
        NameSource::Flag
    } else {
        NameSource::Stdin
    };
    let Some(name) = args.name.or_else(|| ask_name(&mut input)) else {
        eprintln!("standard input ended before a name was given");
        return ExitCode::FAILURE;
    };

    let stream = match TcpStream::connect(&addr) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("cannot connect to {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let events = match spawn_reader(&stream, source) {
        Ok(events) => events,
        Err(error) => {
            eprintln!("cannot read from {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    run(stream, &events, &mut input, name)
}

/// Drives the connection once it is open: the handshake, then the chat,
/// then `QUIT`. The reader thread ends the process when the server closes
/// the connection, so this returns only if that thread failed.
fn run(
    mut stream: TcpStream,
    events: &Receiver<Event>,
    input: &mut impl BufRead,
    name: String,
) -> ExitCode {
    if handshake(&mut stream, events, input, name) {
        chat(&mut stream, input);
    }
    send_or_close(&mut stream, b"QUIT");
    wait_for_close(events)
}

/// Answers every `NAME` until the server welcomes us. Returns `false` if
/// standard input ended with no name to send.
fn handshake(
    stream: &mut TcpStream,
    events: &Receiver<Event>,
    input: &mut impl BufRead,
    name: String,
) -> bool {
    let mut name = Some(name);
    loop {
        match events.recv() {
            Ok(Event::NameAsked) => {
                let Some(answer) = name.take().or_else(|| ask_name(input)) else {
                    return false;
                };
                send_or_close(stream, answer.as_bytes());
            }
            // The reader thread ends the process itself when the name came
            // from `--name`; otherwise the next `NAME` asks for another.
            Ok(Event::NameRejected) => name = None,
            Ok(Event::Welcome) => return true,
            // The reader thread is gone; `wait_for_close` reports it.
            Err(_) => return false,
        }
    }
}

/// Sends every line of standard input until it ends.
fn chat(stream: &mut TcpStream, input: &mut impl BufRead) {
    while let Some(line) = read_line_bytes(input) {
        send_or_close(stream, &line);
    }
}

/// Waits for the reader thread, which ends the process when the server
/// closes the connection; reaching the end of this means that thread failed.
fn wait_for_close(events: &Receiver<Event>) -> ExitCode {
    while events.recv().is_ok() {}
    eprintln!("the connection reader stopped unexpectedly");
    ExitCode::FAILURE
}

/// Sends one line, adding `\n`. On failure the connection is shut down, so
/// the reader thread sees its end and ends the process.
fn send_or_close(stream: &mut TcpStream, line: &[u8]) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line);
    bytes.push(b'\n');
    if let Err(error) = stream.write_all(&bytes).and_then(|()| stream.flush()) {
        eprintln!("cannot send to the server: {error}");
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Starts the thread that reads the server's lines.
fn spawn_reader(stream: &TcpStream, source: NameSource) -> io::Result<Receiver<Event>> {
    let reader = BufReader::new(stream.try_clone()?);
    let (events, receiver) = mpsc::channel();
    thread::Builder::new()
        .name("server-reader".to_owned())
        .spawn(move || {
            let code = read_server(reader, &events, source);
            let _ = io::stdout().flush();
            std::process::exit(code);
        })?;
    Ok(receiver)
}

/// Prints every line the server sends and reports the handshake's events.
/// Returns the exit status: 0 when the server closes the connection, 1 when
/// it rejects a name given with `--name`.
fn read_server(mut reader: impl BufRead, events: &Sender<Event>, source: NameSource) -> i32 {
    let mut joined = false;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(error) => {
                eprintln!("connection lost: {error}");
                return 0;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        print_line(&line);
        if joined {
            continue;
        }
        let Some(event) = handshake_event(&line) else {
            continue;
        };
        if event == Event::NameRejected && source == NameSource::Flag {
            return 1;
        }
        joined = event == Event::Welcome;
        // The main thread only stops listening when the process is ending.
        let _ = events.send(event);
    }
}

/// The handshake event a server line stands for, if any.
fn handshake_event(line: &[u8]) -> Option<Event> {
    let line = std::str::from_utf8(line).ok()?;
    if line == "NAME" {
        Some(Event::NameAsked)
    } else if line.starts_with("Invalid name: ")
        || (line.starts_with("Name '") && line.ends_with("' is already taken."))
    {
        Some(Event::NameRejected)
    } else if line.starts_with("Welcome to the chat, ") && line.ends_with('!') {
        Some(Event::Welcome)
    } else {
        None
    }
}

/// Writes one line to standard output, adding `\n`, and flushes it.
fn print_line(line: &[u8]) {
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
}

/// Asks for the server's IP address and port; `None` if input ends.
fn ask_address(input: &mut impl BufRead) -> Option<String> {
    let ip = ask(input, "Enter server IP address:")?;
    let port = loop {
        let answer = ask(input, "Enter server port:")?;
        match answer.parse::<u16>() {
            Ok(port) => break port,
            Err(_) => eprintln!("not a port number: {answer}"),
        }
    };
    Some(join_host_port(&ip, port))
}

/// `<host>:<port>`, with an IPv6 address in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Asks for a name; `None` if input ends.
fn ask_name(input: &mut impl BufRead) -> Option<String> {
    ask(input, "Enter your name:")
}

/// Prints `prompt` on its own line and reads answers until one is not
/// blank (the server ignores blank lines, so they would answer nothing).
/// Returns it trimmed, or `None` if input ends.
fn ask(input: &mut impl BufRead, prompt: &str) -> Option<String> {
    loop {
        print_line(prompt.as_bytes());
        let line = read_line_bytes(input)?;
        let answer = String::from_utf8_lossy(&line).trim().to_owned();
        if !answer.is_empty() {
            return Some(answer);
        }
    }
}

/// The next line of `input` without its `\n` (or `\r\n`); the last line
/// may lack its `\n`. `None` at the end of input or on a read error.
fn read_line_bytes(input: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match input.read_until(b'\n', &mut line) {
        Ok(0) => None,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            Some(line)
        }
        Err(error) => {
            eprintln!("cannot read standard input: {error}");
            None
        }
    }
}
