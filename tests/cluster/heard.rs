//! Chat clients for the failure tests: every line a client receives is read
//! on its own thread as it arrives, stamped with the moment it arrived, so
//! that a test can measure when something happened (a leave notice after a
//! `kill -9`) and can wait through long silences (an outage) with bounds of
//! its own choosing, not the usual per-read timeout.
//!
//! A client is written to from the test (or from a sender thread, with a
//! clone of its socket); what it heard so far is in [`Heard::log`].
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// What a wait gives up after, unless the test says otherwise.
pub const WAIT: Duration = Duration::from_secs(20);

/// A line as it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// A client whose lines are read on their own thread.
pub struct Heard {
    pub label: String,
    stream: TcpStream,
    incoming: Receiver<Line>,
    /// Every line taken from the reader so far, in order.
    pub log: Vec<Line>,
    /// When the server's end of the connection came (end of stream or an
    /// error such as a reset), once it has been seen.
    pub ended: Option<Instant>,
}

impl Heard {
    /// Connects to `addr`; `NAME` is not read yet.
    pub fn connect(addr: SocketAddr, label: &str) -> Heard {
        let stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let reading = stream.try_clone().expect("a clone of the socket");
        let (tx, incoming) = mpsc::channel();
        thread::spawn(move || {
            // No read timeout: the thread ends with the connection.
            for line in BufReader::new(reading).lines() {
                let Ok(text) = line else { return };
                let at = Instant::now();
                if tx.send(Line { at, text }).is_err() {
                    return;
                }
            }
        });
        Heard {
            label: label.to_owned(),
            stream,
            incoming,
            log: Vec::new(),
            ended: None,
        }
    }

    /// Connects and joins as `name`: its welcome read, and every line up
    /// to its own join notice, which it returns (the history it was
    /// replayed).
    pub fn join(addr: SocketAddr, name: &str) -> (Heard, Vec<String>) {
        let mut client = Heard::connect(addr, name);
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        let history = client.read_until(&format!("{name} has joined the chat."));
        (client, history)
    }

    /// Sends one line; fails the test if the connection is broken.
    pub fn send_line(&mut self, line: &str) {
        let label = &self.label;
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{label}: send failed: {e}"));
    }

    /// A clone of its socket, for a sender thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("a clone of the socket")
    }

    /// The next line, waiting until `deadline`: `None` at the end of the
    /// connection. Fails the test past the deadline.
    pub fn next_by(&mut self, deadline: Instant) -> Option<Line> {
        if self.ended.is_some() {
            return None;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(wait) {
            Ok(line) => {
                self.log.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = Some(Instant::now());
                None
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: nothing arrived in time; the last lines: {:?}",
                self.label,
                self.tail()
            ),
        }
    }

    /// The next line (within [`WAIT`]); fails the test at the end of the
    /// connection.
    pub fn line(&mut self) -> Line {
        let deadline = Instant::now() + WAIT;
        match self.next_by(deadline) {
            Some(line) => line,
            None => panic!(
                "{}: the connection ended, a line was expected; the last lines: {:?}",
                self.label,
                self.tail()
            ),
        }
    }

    /// Reads the next line and checks it.
    pub fn expect(&mut self, want: &str) -> Line {
        let line = self.line();
        assert_eq!(line.text, want, "{}: unexpected line", self.label);
        line
    }

    /// Reads until a line equals `want` (within [`WAIT`]); returns those
    /// before it.
    pub fn read_until(&mut self, want: &str) -> Vec<String> {
        self.read_until_by(want, Instant::now() + WAIT).1
    }

    /// Reads until a line equals `want`, by `deadline`; returns that line
    /// and those before it.
    pub fn read_until_by(&mut self, want: &str, deadline: Instant) -> (Line, Vec<String>) {
        let mut before = Vec::new();
        loop {
            match self.next_by(deadline) {
                Some(line) if line.text == want => return (line, before),
                Some(line) => before.push(line.text),
                None => panic!(
                    "{}: the connection ended before {want:?}; the last lines: {:?}",
                    self.label,
                    self.tail()
                ),
            }
        }
    }

    /// Reads everything up to the end of the connection (by `deadline`);
    /// returns the lines.
    pub fn read_to_end_by(&mut self, deadline: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_by(deadline) {
            lines.push(line.text);
        }
        lines
    }

    /// Every line heard after the first one equal to `from` (or all of
    /// them if none is), as text.
    pub fn since(&self, from: &str) -> Vec<String> {
        let start = self
            .log
            .iter()
            .position(|l| l.text == from)
            .map_or(0, |i| i + 1);
        self.log[start..].iter().map(|l| l.text.clone()).collect()
    }

    /// The lines heard after the first one equal to `from` and before the
    /// first after it equal to `to` (fails the test if either is missing).
    pub fn between(&self, from: &str, to: &str) -> Vec<String> {
        let after = self.since(from);
        let end = after
            .iter()
            .position(|l| l == to)
            .unwrap_or_else(|| panic!("{}: {to:?} not heard after {from:?}", self.label));
        assert!(
            self.when(from).is_some(),
            "{}: {from:?} not heard",
            self.label
        );
        after[..end].to_vec()
    }

    /// When a line equal to `text` first arrived.
    pub fn when(&self, text: &str) -> Option<Instant> {
        self.log.iter().find(|l| l.text == text).map(|l| l.at)
    }

    /// How many lines heard equal `text`.
    pub fn count(&self, text: &str) -> usize {
        self.log.iter().filter(|l| l.text == text).count()
    }

    /// Takes every line already arrived, without waiting.
    pub fn drain(&mut self) -> Vec<Line> {
        let mut got = Vec::new();
        while let Ok(line) = self.incoming.try_recv() {
            self.log.push(line.clone());
            got.push(line);
        }
        got
    }

    /// The last few lines heard, for failure messages.
    fn tail(&self) -> Vec<&str> {
        let from = self.log.len().saturating_sub(5);
        self.log[from..].iter().map(|l| l.text.as_str()).collect()
    }
}

/// Has `member` send `<name> <i>` (its label, `i` counting from 0) flat
/// out in bursts of `burst` lines, each burst as soon as the last one's
/// last line came back (so at most `burst` of its lines are in flight and
/// nobody falls behind for good), on its own thread, until `done` says so
/// (asked before each burst), the connection ends, or `deadline` (then it
/// fails). `progress` hears how many of its lines came back after each
/// burst. Returns the member and how many lines it wrote.
pub fn talk(
    member: Heard,
    burst: usize,
    deadline: Instant,
    done: impl Fn(&Heard) -> bool + Send + 'static,
    progress: Option<mpsc::Sender<usize>>,
) -> thread::JoinHandle<(Heard, usize)> {
    let name = member.label.clone();
    talk_with(
        member,
        burst,
        deadline,
        move |i| format!("{name} {i}"),
        done,
        progress,
    )
}

/// [`talk`], sending `line(i)` as its `i`th line (commands included: the
/// last line of each burst must be public text, which comes back).
pub fn talk_with(
    mut member: Heard,
    burst: usize,
    deadline: Instant,
    line: impl Fn(usize) -> String + Send + 'static,
    done: impl Fn(&Heard) -> bool + Send + 'static,
    progress: Option<mpsc::Sender<usize>>,
) -> thread::JoinHandle<(Heard, usize)> {
    thread::spawn(move || {
        let name = member.label.clone();
        let mut writer = member.writer();
        let mut sent = 0;
        while !done(&member) {
            let mut bytes = Vec::new();
            for i in sent..sent + burst {
                bytes.extend_from_slice(line(i).as_bytes());
                bytes.push(b'\n');
            }
            if writer.write_all(&bytes).is_err() {
                break;
            }
            sent += burst;
            let last = format!("{name}: {}", line(sent - 1));
            loop {
                match member.next_by(deadline) {
                    Some(heard) if heard.text == last => break,
                    Some(_) => {}
                    None => return (member, sent),
                }
            }
            if let Some(progress) = &progress {
                let _ = progress.send(sent);
            }
        }
        (member, sent)
    })
}
