//! A real nats-server for the cluster tests: started by the test itself on
//! 127.0.0.1 and a free port, with JetStream in a fresh directory, and
//! killed (its directory removed) on drop.
//!
//! nats-server comes from Debian's package (`apt-get install nats-server`,
//! or `.ci/nats.sh`). When it is missing, [`NatsServer::start`] fails the
//! test under CI (`CI=true`) and otherwise returns `None` after saying how to
//! install it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long nats-server may take to say it is ready.
const READY: Duration = Duration::from_secs(10);

/// The nats-server binary: `$NATS_SERVER`, or `nats-server` on the PATH,
/// or Debian's `/usr/sbin/nats-server` (not on a plain user's PATH).
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    found
}

/// One nats-server process.
pub struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts a server, or returns `None` (locally) when nats-server is not
    /// installed.
    pub fn start() -> Option<NatsServer> {
        let Some(binary) = binary() else {
            let how = "nats-server is not installed: run `bash .ci/nats.sh` \
                       (or `apt-get install nats-server`)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{how}");
            }
            eprintln!("SKIPPED: {how}");
            return None;
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chatcore-nats-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for JetStream");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = NatsServer {
            binary,
            child: None,
            dir,
            port,
        };
        server.restart();
        Some(server)
    }

    /// The URL links connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it as an operator would (SIGTERM: JetStream flushes its files),
    /// and waits for the process to end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): its connections stay open and nothing
    /// is answered, the cleanest outage. [`NatsServer::resume`] ends it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("nats-server is running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{name} nats-server failed: {status}"
        );
    }

    /// Starts it (again) on the same port with the same store, and waits
    /// until it says it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let mut child = Command::new(&self.binary)
            .args(["-js", "-sd"])
            .arg(&self.dir)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server starts");
        let stderr = child.stderr.take().expect("nats-server's stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut said = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !said && line.contains("Server is ready") {
                    said = true;
                    let _ = tx.send(());
                }
                if std::env::var_os("NATS_LOG").is_some() {
                    eprintln!("nats-server: {line}");
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(READY).is_err() {
            panic!("nats-server on port {} did not become ready", self.port);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
