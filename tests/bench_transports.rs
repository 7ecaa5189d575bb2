//! `chat_bench --transport tcp|tls|ws|wss`: every mode (public, private,
//! idle, storm, churn), short, against a server with a listener per
//! transport ([`TestServer::with_transports`]); each run must pass its own
//! checks (nothing lost, duplicated or misordered; every client answered).
#![cfg(all(feature = "tls", feature = "websocket"))]

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Once};
use std::thread;
use std::time::Duration;

use chatcore::ServerConfig;
use common::{Io, Kind, TestServer, TRANSPORTS};

/// Bound on one chat_bench run: its own phase timeouts are far longer, so
/// a run that hangs fails here first.
const RUN_BOUND: Duration = Duration::from_secs(60);

/// `<target>/debug/examples/chat_bench`, built once per test process if
/// missing (as `tests/examples.rs` does).
fn chat_bench() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target profile directory");
    let path = profile.join("examples").join("chat_bench");
    static BUILD: Once = Once::new();
    if !path.exists() {
        BUILD.call_once(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--example", "chat_bench"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "cargo build --example chat_bench: {status}"
            );
        });
    }
    assert!(path.exists(), "{} does not exist", path.display());
    path
}

/// A child killed on drop, so a failed test leaves nothing running.
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs chat_bench over `kind` with `flags` (and `--json`); returns its
/// JSON line. Fails the test unless it exits with 0 within [`RUN_BOUND`].
fn bench(server: &TestServer, kind: Kind, flags: &[&str]) -> String {
    let addr = server.addr_for(kind).to_string();
    let mut command = Command::new(chat_bench());
    command
        .args(["--addr", &addr, "--transport", kind.name(), "--json"])
        .args(["--threads", "1", "--drain-timeout", "5"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Run(command.spawn().expect("start chat_bench"));
    let mut stdout = run.0.stdout.take().expect("piped");
    let mut stderr = run.0.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let label = format!("chat_bench over {kind} {}", flags.join(" "));
    let (out, err) = rx
        .recv_timeout(RUN_BOUND)
        .unwrap_or_else(|_| panic!("{label}: no exit within {RUN_BOUND:?}"));
    let status = run.0.wait().expect("wait for chat_bench");
    assert!(status.success(), "{label}: {status}\n{out}\n{err}");
    println!("{label}: {out}");
    assert!(
        out.contains(&format!("\"transport\":\"{}\"", kind.name())),
        "{label}: {out}"
    );
    out
}

/// One server per transport and mode, so no run sees another's members.
/// Returns each run's JSON line.
fn each_transport(flags: &[&str]) -> Vec<(Kind, String)> {
    TRANSPORTS
        .iter()
        .map(|&kind| {
            let server = TestServer::with_transports(Io::Events, ServerConfig::default());
            (kind, bench(&server, kind, flags))
        })
        .collect()
}

/// A number of a chat_bench JSON line.
fn number(json: &str, key: &str) -> f64 {
    let start = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let end = json[start..]
        .find([',', '}'])
        .map_or(json.len(), |i| start + i);
    json[start..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn public_lines_over_every_transport() {
    // --ack all: no member can fall more than the window behind, so the
    // server's slow-consumer limit never cuts a member of the loader's.
    for (kind, json) in each_transport(&[
        "--mode",
        "public",
        "--ack",
        "all",
        "--members",
        "6",
        "--senders",
        "3",
        "--duration",
        "0.3",
    ]) {
        assert!(number(&json, "deliveries") > 0.0, "{kind}: {json}");
        assert_eq!(number(&json, "lost"), 0.0, "{kind}: {json}");
    }
}

#[test]
fn whispers_over_every_transport() {
    each_transport(&[
        "--mode",
        "private",
        "--members",
        "6",
        "--senders",
        "3",
        "--duration",
        "0.3",
    ]);
}

#[test]
fn paced_public_lines_over_every_transport() {
    each_transport(&[
        "--mode",
        "public",
        "--members",
        "4",
        "--senders",
        "2",
        "--rate",
        "200",
        "--duration",
        "0.3",
    ]);
}

#[test]
fn idle_members_over_every_transport() {
    each_transport(&["--mode", "idle", "--members", "20", "--duration", "0.2"]);
}

#[test]
fn a_connect_storm_over_every_transport() {
    each_transport(&[
        "--mode",
        "storm",
        "--members",
        "40",
        "--burst",
        "20",
        "--storm-timeout",
        "20",
    ]);
}

#[test]
fn churn_over_every_transport() {
    let runs = each_transport(&[
        "--mode",
        "churn",
        "--members",
        "3",
        "--senders",
        "2",
        "--rate",
        "50",
        "--churners",
        "3",
        "--stay-min",
        "0.02",
        "--stay-max",
        "0.2",
        "--quit-share",
        "0.5",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--sample-every",
        "0.5",
    ]);
    // Both ways of leaving happened (over WebSocket, `QUIT` is checked to
    // end with close code 1000).
    for (kind, json) in runs {
        assert!(number(&json, "churn_quits") > 0.0, "{kind}: {json}");
        assert!(number(&json, "churn_closes") > 0.0, "{kind}: {json}");
    }
}
