//! `tcp_server` as a real process, for tests that need one (flags, exit
//! statuses, signals, `kill -9`): started on 127.0.0.1 port 0, its address
//! read from its first line, every wait bounded, killed on drop.
//!
//! The example is built once per test process with the features this test
//! was built with (so a `--features nats` test gets a `tcp_server` that
//! takes `--nats`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a process may take to start, or to exit when asked.
pub const PROC_TIMEOUT: Duration = Duration::from_secs(20);

/// `<target>/debug/examples`: a test runs from `<target>/debug/deps`.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    let profile = deps.parent().expect("the target profile directory");
    profile.join("examples")
}

/// The `tcp_server` binary, built (once per test process) with this test's
/// features.
pub fn tcp_server_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut command = Command::new(env!("CARGO"));
        command.args(["build", "--example", "tcp_server"]);
        // What cargo sets for this test: passed on, `CARGO_MANIFEST_DIR`
        // (which some build scripts watch) would rebuild the dependencies
        // for nothing.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || matches!(
                    &*key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                command.env_remove(&*key);
            }
        }
        if cfg!(feature = "nats") {
            command.args(["--features", "nats"]);
        }
        let status = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example tcp_server");
        assert!(status.success(), "building tcp_server failed: {status}");
    });
    let path = examples_dir().join(format!("tcp_server{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} does not exist", path.display());
    path
}

/// A `tcp_server` process.
pub struct ServerProc {
    pub label: String,
    child: Child,
    /// The address of its first line (`None` if it exited before).
    pub addr: Option<SocketAddr>,
    stdout: Receiver<String>,
    /// Everything it wrote on standard error so far.
    stderr: Arc<Mutex<String>>,
    /// The thread gathering it: done once the process's standard error
    /// has ended.
    stderr_reader: thread::JoinHandle<()>,
}

impl ServerProc {
    /// Starts `tcp_server --addr 127.0.0.1:0 <args>` and waits for its first
    /// line (or its exit): see [`ServerProc::addr`].
    pub fn start(label: &str, args: &[&str]) -> ServerProc {
        let mut child = Command::new(tcp_server_binary())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start tcp_server: {e}"));
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("piped stderr"));
        let mut proc = ServerProc {
            label: label.to_owned(),
            child,
            addr: None,
            stdout,
            stderr,
            stderr_reader,
        };
        proc.addr = match proc.stdout.recv_timeout(PROC_TIMEOUT) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("Server listening on ")
                    .unwrap_or_else(|| panic!("{label}: unexpected first line {line:?}"));
                Some(addr.parse().expect("an address"))
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{label}: no first line within {PROC_TIMEOUT:?}")
            }
        };
        proc
    }

    /// Its address; fails the test if it exited before saying it.
    pub fn addr(&self) -> SocketAddr {
        match self.addr {
            Some(addr) => addr,
            None => panic!("{}: exited at start: {}", self.label, self.stderr()),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Whether it is still running (it has not exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits, bounded by `within`, for it to exit.
    pub fn wait_exit_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Its last lines may still be on their way to `stderr`.
                while !self.stderr_reader.is_finished() && Instant::now() < deadline {
                    thread::park_timeout(Duration::from_millis(5));
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit within {within:?}; its log: {}",
                self.label,
                self.stderr()
            );
            thread::park_timeout(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) for it to exit with `code`.
    pub fn expect_exit(&mut self, code: i32) {
        let status = self.wait_exit_within(PROC_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(code),
            "{}: exit status; its log: {}",
            self.label,
            self.stderr()
        );
    }

    /// What it wrote on standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Each line of `output`, without its `\n`, on a channel that disconnects
/// when the output ends.
fn lines_of(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Everything `output` says, gathered as it comes (echoed with
/// `TEST_SERVER_LOG` set), and the thread that gathers it (it ends with
/// the output).
fn collect(output: impl Read + Send + 'static) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if std::env::var_os("TEST_SERVER_LOG").is_some() {
                eprintln!("{line}");
            }
            if let Ok(mut text) = sink.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    (text, reader)
}
