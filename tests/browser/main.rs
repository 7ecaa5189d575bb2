//! A real headless Chromium (Debian's `chromium`, never a downloaded build)
//! uses the chat page of a real `tcp_server` process over `ws` and `wss`,
//! and chats with a TCP member in the same room, driven by `chat.mjs`
//! (node, playwright-core), as a person would: a name, public lines, a
//! whisper each way, and the page saying the connection is lost when the
//! server stops (SIGTERM).
//!
//! The server runs as a newcomer runs it: `tcp_server --addr 127.0.0.1:0
//! --ws-addr 127.0.0.1:0 --wss-addr 127.0.0.1:0`, the addresses read from
//! its listener lines; `wss` uses the self-signed certificate it makes at
//! start (the browser ignores certificate errors).
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium`) and
//! `npm ci --prefix tests/browser`, so it is ignored by default:
//! `cargo test --test browser -- --ignored`. Set `CHATCORE_SCREENSHOTS` to a
//! directory to keep screenshots of the page.
#![cfg(all(feature = "tls", feature = "websocket"))]

#[path = "../common/mod.rs"]
mod common;
#[path = "../examples/process.rs"]
mod process;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::TIMEOUT;
use process::ServerProc;

/// What the page showed, as `chat.mjs` printed it.
#[derive(Debug, Default)]
struct PageReport {
    steps: Vec<String>,
    lines: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    status: Option<i32>,
}

impl PageReport {
    fn field(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn run_page(url: String) -> mpsc::Receiver<PageReport> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/chat.mjs");
    let mut command = Command::new("node");
    command.arg(script).arg(url).stdout(Stdio::piped());
    if let Ok(dir) = std::env::var("CHATCORE_SCREENSHOTS") {
        command.arg(dir);
    }
    let mut child = command.spawn().expect("node runs (is node installed?)");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut report = PageReport::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut fields = line.splitn(3, '\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some("step"), Some(step), None) => report.steps.push(step.to_owned()),
                (Some("line"), Some(class), Some(text)) => {
                    report.lines.push((class.to_owned(), text.to_owned()))
                }
                (Some(key), Some(value), None) => {
                    report.fields.push((key.to_owned(), value.to_owned()))
                }
                _ => eprintln!("chat.mjs: {line}"),
            }
        }
        report.status = child.wait().ok().and_then(|s| s.code());
        let _ = tx.send(report);
    });
    rx
}

/// A `tcp_server` process with a member `bob` over TCP, and a browser
/// whose page, at `http://` of the `--ws-addr` listener or `https://` of
/// the `--wss-addr` one (`secure`), joins as `ana` and chats with him.
fn chat_with_a_browser(secure: bool) {
    let mut server = ServerProc::start(
        "events",
        &["--ws-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0"],
    );
    let web_addr = server.listener(if secure {
        "Secure WebSocket"
    } else {
        "WebSocket"
    });
    let mut bob = server.join("bob");

    let scheme = if secure { "https" } else { "http" };
    let page = run_page(format!("{scheme}://{web_addr}/"));

    bob.expect("ana has joined the chat.");
    bob.expect("ana: hello from the browser");
    bob.send_line("hi ana");
    bob.send_line("\\w ana psst from nc");
    bob.expect("bob: hi ana");
    bob.expect("priv(ana): psst from the browser");
    server.proc.signal("TERM");
    bob.expect("Server is shutting down.");
    bob.expect_closed();
    server.proc.expect_exit(0);

    let report = page
        .recv_timeout(TIMEOUT * 3)
        .expect("the browser finished in time");
    println!("{report:#?}");
    assert_eq!(report.status, Some(0), "{}", report.field("error"));
    let texts: Vec<&str> = report.lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello from the browser",
            "bob: hi ana",
            "priv(bob): psst from nc",
            "Server is shutting down.",
        ]
    );
    let classes: Vec<&str> = report.lines.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        classes,
        [
            "notice",
            "notice",
            "notice",
            "public mine",
            "public",
            "whisper",
            "notice"
        ]
    );
    assert!(
        report.field("banner").contains("shutting down"),
        "{}",
        report.field("banner")
    );
    assert_eq!(report.field("state"), "Disconnected");
    assert_eq!(report.field("newestVisible"), "true");
    assert_eq!(report.field("fitsWidth"), "true");
    assert_eq!(report.field("inputDisabled"), "true");
}

#[test]
#[ignore = "needs /usr/bin/chromium and `npm ci --prefix tests/browser`"]
fn a_browser_chats_with_a_tcp_member_over_ws() {
    chat_with_a_browser(false);
}

#[test]
#[ignore = "needs /usr/bin/chromium and `npm ci --prefix tests/browser`"]
fn a_browser_chats_with_a_tcp_member_over_wss() {
    chat_with_a_browser(true);
}
