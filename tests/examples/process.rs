//! The example binaries as child processes, for `tests/examples.rs` and
//! the browser test: finding (and if need be building) them, reading their
//! output line by line with bounded waits, and a `tcp_server` on 127.0.0.1
//! port 0 with the addresses its listener lines announced. Every child is
//! killed when its handle drops, so a failed test leaves no process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Client, TIMEOUT};

// ---------------------------------------------------------------------------
// Locating the example binaries
// ---------------------------------------------------------------------------

/// `<target>/debug/examples`: this test runs from `<target>/debug/deps`.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    let profile = deps.parent().expect("the target profile directory");
    profile.join("examples")
}

/// Builds the examples, once per test process.
fn build_examples() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed: {status}");
    });
}

/// The path of an example binary, building the examples if it is missing.
pub(crate) fn example(name: &str) -> PathBuf {
    let path = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        build_examples();
    }
    assert!(path.exists(), "{} does not exist", path.display());
    path
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process whose standard output is read line by line on a thread,
/// and whose standard error is collected whole. Killed on drop.
pub(crate) struct Proc {
    label: String,
    child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Proc {
    /// Starts `command` with piped standard streams.
    pub(crate) fn spawn(label: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Proc {
            label: label.to_owned(),
            child,
            stdin,
            stdout: read_lines(stdout),
            stderr: read_all(stderr),
        }
    }

    /// The next line on standard output, or `None` when it ends. Fails the
    /// test if nothing comes within [`TIMEOUT`].
    pub(crate) fn next_line(&mut self) -> Option<String> {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no output line within {TIMEOUT:?}", self.label)
            }
        }
    }

    /// The next line on standard output; fails the test if it ended.
    pub(crate) fn line(&mut self) -> String {
        match self.next_line() {
            Some(line) => line,
            None => panic!("{}: standard output ended, a line was expected", self.label),
        }
    }

    /// Reads the next lines and checks them, in order.
    pub(crate) fn expect_lines(&mut self, expected: &[&str]) {
        for want in expected {
            let got = self.line();
            assert_eq!(got, *want, "{}: unexpected output line", self.label);
        }
    }

    /// Expects standard output to end with no more lines.
    pub(crate) fn expect_stdout_end(&mut self) {
        if let Some(line) = self.next_line() {
            panic!("{}: expected the end of output, got {line:?}", self.label);
        }
    }

    /// Writes `text` to the child's standard input.
    pub(crate) fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Ends the child's standard input.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits, bounded by [`TIMEOUT`], for the child to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit within {TIMEOUT:?}",
                self.label
            );
            thread::park_timeout(Duration::from_millis(10));
        }
    }

    /// Expects the child to exit with `code` (bounded wait).
    pub(crate) fn expect_exit(&mut self, code: i32) {
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(code), "{}: exit status", self.label);
    }

    /// Everything the child wrote on standard error; call after it exited.
    pub(crate) fn stderr(&mut self) -> String {
        self.stderr
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{}: standard error did not end", self.label))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends each line of `output` (without `\n`) on a channel, from a thread;
/// the channel disconnects when the output ends.
fn read_lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(output);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Reads `output` to its end on a thread (so the child never blocks on a
/// full pipe) and sends it whole.
fn read_all(mut output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = output.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

// ---------------------------------------------------------------------------
// The two examples
// ---------------------------------------------------------------------------

/// A `tcp_server` process on 127.0.0.1 port 0.
pub(crate) struct ServerProc {
    pub(crate) proc: Proc,
    /// The TCP line listener's address, from the first line.
    pub(crate) addr: SocketAddr,
    /// The extra listeners' labels and addresses, from the lines after the
    /// first, in order.
    pub(crate) listeners: Vec<(&'static str, SocketAddr)>,
}

/// The extra listeners' flags and the labels of their lines, in the order
/// the server prints them.
const LISTENER_LINES: &[(&str, &str)] = &[
    ("--tls-addr", "TLS"),
    ("--ws-addr", "WebSocket"),
    ("--wss-addr", "Secure WebSocket"),
];

impl ServerProc {
    /// Starts the server in `--io` mode `io` with extra flags, and reads
    /// its first line and one line for each extra listener in `flags`
    /// (checking their order: TLS, WebSocket, secure WebSocket).
    pub(crate) fn start(io: &str, flags: &[&str]) -> Self {
        Self::start_with_log(io, flags, None)
    }

    /// Starts the server with `RUST_LOG` set to `log` (or unset).
    pub(crate) fn start_with_log(io: &str, flags: &[&str], log: Option<&str>) -> Self {
        let mut command = Command::new(example("tcp_server"));
        command
            .args(["--addr", "127.0.0.1:0", "--io", io])
            .args(flags);
        match log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut proc = Proc::spawn(&format!("tcp_server --io {io}"), command);
        let addr = announced(&mut proc, "Server");
        let listeners = LISTENER_LINES
            .iter()
            .filter(|(flag, _)| flags.contains(flag))
            .map(|&(_, label)| (label, announced(&mut proc, label)))
            .collect();
        ServerProc {
            proc,
            addr,
            listeners,
        }
    }

    /// The address the line `<label> listening on <ip>:<port>` announced;
    /// fails the test if the server has no such listener.
    pub(crate) fn listener(&self, label: &str) -> SocketAddr {
        match self.listeners.iter().find(|(l, _)| *l == label) {
            Some((_, addr)) => *addr,
            None => panic!("no {label} listener: {:?}", self.listeners),
        }
    }

    /// A TCP member who joined as `name`, its welcome and join lines read.
    pub(crate) fn join(&self, name: &str) -> Client {
        let mut client = Client::connect(self.addr);
        client.name = name.to_owned();
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        client.expect(&format!("{name} has joined the chat."));
        client
    }
}

/// Reads the line `<label> listening on <ip>:<port>` and returns the
/// address, a real port on 127.0.0.1.
fn announced(proc: &mut Proc, label: &str) -> SocketAddr {
    let line = proc.line();
    let prefix = format!("{label} listening on ");
    let addr = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}..., got {line:?}"));
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line:?}");
    assert_ne!(addr.port(), 0, "{line:?}");
    addr
}
