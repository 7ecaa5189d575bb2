//! The TCP examples as real processes: `tcp_server` (first line, flags,
//! signals, logs) and `tcp_client` with piped standard input, against a
//! `tcp_server` process or an in-process server. Every wait is bounded, and
//! every child process is killed when its test ends, passed or failed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, TestServer, IO_MODES, TIMEOUT};

/// Every `--io` mode of `tcp_server`; each server test runs over all of them.
const SERVER_IO: &[&str] = &["threads", "events"];

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
fn example(name: &str) -> PathBuf {
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
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Proc {
    /// Starts `command` with piped standard streams.
    fn spawn(label: &str, mut command: Command) -> Self {
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
    fn next_line(&mut self) -> Option<String> {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no output line within {TIMEOUT:?}", self.label)
            }
        }
    }

    /// The next line on standard output; fails the test if it ended.
    fn line(&mut self) -> String {
        match self.next_line() {
            Some(line) => line,
            None => panic!("{}: standard output ended, a line was expected", self.label),
        }
    }

    /// Reads the next lines and checks them, in order.
    fn expect_lines(&mut self, expected: &[&str]) {
        for want in expected {
            let got = self.line();
            assert_eq!(got, *want, "{}: unexpected output line", self.label);
        }
    }

    /// Expects standard output to end with no more lines.
    fn expect_stdout_end(&mut self) {
        if let Some(line) = self.next_line() {
            panic!("{}: expected the end of output, got {line:?}", self.label);
        }
    }

    /// Writes `text` to the child's standard input.
    fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Ends the child's standard input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits, bounded by [`TIMEOUT`], for the child to exit.
    fn wait_exit(&mut self) -> ExitStatus {
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
    fn expect_exit(&mut self, code: i32) {
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(code), "{}: exit status", self.label);
    }

    /// Everything the child wrote on standard error; call after it exited.
    fn stderr(&mut self) -> String {
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
struct ServerProc {
    proc: Proc,
    addr: SocketAddr,
}

impl ServerProc {
    /// Starts the server in `--io` mode `io` with extra flags, and reads
    /// its first line.
    fn start(io: &str, flags: &[&str]) -> Self {
        Self::start_with_log(io, flags, None)
    }

    /// Starts the server with `RUST_LOG` set to `log` (or unset).
    fn start_with_log(io: &str, flags: &[&str], log: Option<&str>) -> Self {
        let mut command = Command::new(example("tcp_server"));
        command
            .args(["--addr", "127.0.0.1:0", "--io", io])
            .args(flags);
        match log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut proc = Proc::spawn(&format!("tcp_server --io {io}"), command);
        let first = proc.line();
        let addr = first
            .strip_prefix("Server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {first:?}: {e}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{first:?}");
        assert_ne!(addr.port(), 0, "{first:?}");
        ServerProc { proc, addr }
    }

    /// A member who joined as `name`, its welcome and join lines read.
    fn join(&self, name: &str) -> Client {
        let mut client = Client::connect(self.addr);
        client.name = name.to_owned();
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        client.expect(&format!("{name} has joined the chat."));
        client
    }
}

/// A `tcp_client` process with the given flags and piped standard input.
fn client(flags: &[&str]) -> Proc {
    let mut command = Command::new(example("tcp_client"));
    command.args(flags).env_remove("RUST_LOG");
    Proc::spawn("tcp_client", command)
}

/// A `tcp_client` process with `--addr` for `addr` and the extra flags.
fn client_at(addr: SocketAddr, flags: &[&str]) -> Proc {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(flags);
    client(&all)
}

// ---------------------------------------------------------------------------
// tcp_server
// ---------------------------------------------------------------------------

#[test]
fn server_prints_its_address_first_and_greets_with_name() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &[]);
        let mut client = Client::connect(server.addr);
        client.expect("NAME");
    }
}

#[test]
fn server_max_clients_flag_refuses_the_extra_connection() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--max-clients", "1"]);
        let mut first = Client::connect(server.addr);
        first.expect("NAME");
        let mut second = Client::connect(server.addr);
        second.expect("Server is full.");
        second.expect_closed();
    }
}

#[test]
fn server_max_line_flag_limits_lines() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--max-line", "8"]);
        let mut ana = server.join("ana");
        ana.send_line("123456789");
        ana.expect("Line too long (max 8 bytes).");
        ana.send_line("12345678");
        ana.expect("ana: 12345678");
    }
}

#[test]
fn server_refuses_limits_that_cannot_work_together() {
    // 100 bytes cannot hold one 4096-byte line: every member would be
    // dropped on its first long line. The server says so and exits 1.
    let mut command = Command::new(example("tcp_server"));
    command
        .args(["--addr", "127.0.0.1:0", "--queue-bytes", "100"])
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("tcp_server --queue-bytes 100", command);
    server.expect_stdout_end();
    server.expect_exit(1);
    let stderr = server.stderr();
    assert!(
        stderr.contains("queue_bytes is 100") && stderr.contains("max_line 4096"),
        "stderr: {stderr}"
    );
}

#[test]
fn server_queue_bytes_flag_takes_the_smallest_queue_that_works() {
    for io in SERVER_IO {
        // 185 bytes hold one longest line for 16-byte client lines (a
        // 32-character name, 16 carriage returns sent as U+FFFD).
        let server = ServerProc::start(io, &["--max-line", "16", "--queue-bytes", "185"]);
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("\\w bob short");
        bob.expect("priv(ana): short");
        ana.expect_nothing_pending();
    }
}

#[test]
fn server_takes_the_largest_name_timeout_as_never() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--name-timeout", "18446744073709551615"]);
        let mut silent = Client::connect(server.addr);
        silent.expect("NAME");
        // The server survived the deadline arithmetic: it still serves.
        let mut ana = server.join("ana");
        ana.send_line("hi");
        ana.expect("ana: hi");
    }
}

#[test]
fn server_name_timeout_flag_closes_a_silent_connection() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--name-timeout", "1"]);
        let mut client = Client::connect(server.addr);
        client.expect("NAME");
        client.expect("Timed out waiting for a name.");
        client.expect_closed();
    }
}

/// Sends `signal` to a server with a member, and checks the shutdown.
fn check_shutdown_on(signal: &str) {
    for io in SERVER_IO {
        let mut server = ServerProc::start(io, &[]);
        let mut ana = server.join("ana");
        server.proc.signal(signal);
        ana.expect("Server is shutting down.");
        ana.expect_closed();
        server.proc.expect_exit(0);
    }
}

#[test]
fn server_shuts_down_on_sigterm() {
    check_shutdown_on("TERM");
}

#[test]
fn server_shuts_down_on_sigint() {
    check_shutdown_on("INT");
}

#[test]
fn server_never_logs_private_messages() {
    for io in SERVER_IO {
        let secrets = [
            format!("s3cret-to-bob-{io}-7f2a"),
            format!("s3cret-to-nobody-{io}-91c4"),
            format!("s3cret-to-self-{io}-e05d"),
        ];
        let mut server = ServerProc::start_with_log(io, &[], Some("debug"));
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");

        ana.send_line(&format!("\\w bob {}", secrets[0]));
        bob.expect(&format!("priv(ana): {}", secrets[0]));
        ana.send_line(&format!("\\w nobody {}", secrets[1]));
        ana.expect("User 'nobody' not found.");
        ana.send_line(&format!("\\w ana {}", secrets[2]));
        ana.expect(&format!("priv(ana): {}", secrets[2]));

        server.proc.signal("TERM");
        ana.expect("Server is shutting down.");
        bob.expect("Server is shutting down.");
        server.proc.expect_exit(0);
        let log = server.proc.stderr();
        // The example's own log line: the log was written, and read whole.
        assert!(log.contains("tcp_server"), "expected log lines: {log:?}");
        for secret in &secrets {
            assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------
// tcp_client
// ---------------------------------------------------------------------------

#[test]
fn client_with_addr_and_name_chats_then_quits_at_end_of_input() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.write_stdin("hello\n  inner  spaces \n");
        ana.close_stdin();
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
            "ana:   inner  spaces ",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hello");
        bob.expect("ana:   inner  spaces ");
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    }
}

#[test]
fn client_against_a_server_process() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &[]);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.write_stdin("hi bob\n\\w bob psst\n");
        ana.close_stdin();
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hi bob",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hi bob");
        bob.expect("priv(ana): psst");
        bob.expect("ana has left the chat.");
    }
}

#[test]
fn client_asks_for_a_missing_name() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &[]);
        ana.write_stdin("ana\nhello\n");
        ana.close_stdin();
        ana.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hello");
        bob.expect("ana has left the chat.");
    }
}

#[test]
fn client_asks_for_a_missing_address() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client(&[]);
        ana.write_stdin(&format!("127.0.0.1\n{}\nana\nhello\n", server.addr.port()));
        ana.close_stdin();
        ana.expect_lines(&[
            "Enter server IP address:",
            "Enter server port:",
            "Enter your name:",
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
    }
}

#[test]
fn client_exits_with_1_when_its_flag_name_is_taken() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        // Standard input stays open: the rejection alone ends the client.
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.expect_lines(&["NAME", "Name 'ana' is already taken."]);
        ana.expect_stdout_end();
        ana.expect_exit(1);
        first.expect_nothing_pending();
    }
}

#[test]
fn client_exits_with_1_when_its_flag_name_is_invalid() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client_at(server.addr, &["--name", "\\ana"]);
        ana.expect_lines(&[
            "NAME",
            "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(1);
    }
}

#[test]
fn client_asks_again_when_its_typed_name_is_taken() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        let mut bea = client_at(server.addr, &[]);
        // All at once: the second line must be taken as the next name, not
        // sent as chat.
        bea.write_stdin("ana\nbea\nhello\n");
        bea.close_stdin();
        bea.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Name 'ana' is already taken.",
            "NAME",
            "Enter your name:",
            "Welcome to the chat, bea!",
            "bea has joined the chat.",
            "bea: hello",
        ]);
        bea.expect_stdout_end();
        bea.expect_exit(0);
        first.expect("bea has joined the chat.");
        first.expect("bea: hello");
        first.expect("bea has left the chat.");
        first.expect_nothing_pending();
    }
}

#[test]
fn client_quits_when_input_ends_with_no_name_to_send() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        let mut other = client_at(server.addr, &[]);
        other.write_stdin("ana\n");
        other.close_stdin();
        other.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Name 'ana' is already taken.",
            "NAME",
            "Enter your name:",
        ]);
        other.expect_stdout_end();
        other.expect_exit(0);
        first.expect_nothing_pending();
        server.wait_members(1);
    }
}

#[test]
fn client_exits_with_0_when_the_server_shuts_down_while_it_waits_on_input() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
        ]);
        // Standard input stays open.
        server.trigger_shutdown();
        ana.expect_lines(&["Server is shutting down."]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        assert!(ana.stdin.is_some(), "standard input was kept open");
    }
}

#[test]
fn client_exits_with_1_when_it_cannot_connect() {
    // A port that was just free: nothing listens there any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0");
    let mut ana = client_at(addr, &["--name", "ana"]);
    ana.expect_stdout_end();
    ana.expect_exit(1);
    let error = ana.stderr();
    assert!(!error.is_empty(), "a message on standard error");
}
