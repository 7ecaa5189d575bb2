//! Slow consumers on the event-loop driver: members that never read are
//! cut, and members that read everything they are sent are never cut,
//! however the loop batches its writes (issue 7, bug 9).
//!
//! The scenario, scaled to run in seconds in a debug build: hundreds of
//! members that never read, with small receive buffers; one member that
//! sends public lines flat out, never has more than a window of its own
//! bytes in flight and reads everything; and a few dozen members that only
//! read. The test drives every member that reads from one thread, so that a
//! member falls behind only if the server holds its lines back.
//!
//! The server runs one event loop: every line is then pushed into the
//! readers' outboxes by the thread that also writes them, and whether a
//! reader is cut depends on the loop's logic alone, not on how the system
//! schedules two loops. With twenty-four readers woken at once, the loop
//! defers their writes to its flush tick; before the fix a deferred outbox
//! filled until the tick and the readers were cut. Nothing here measures
//! time: the test asserts who is cut and who is not.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use chatcore::ServerConfig;
use common::{connect_never_reading, wait_until, TestServer, TIMEOUT};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

/// Members that never read.
const NEVER_READERS: usize = 300;
/// Members that only read: more than the event loop writes at once when
/// woken together, so that it defers their writes to its flush tick.
const LISTENERS: usize = 24;
/// The server's queue limit per member.
const QUEUE_BYTES: usize = 128 * 1024;
/// The sender's own bytes in flight at most. One turn of the loop reads no
/// more than this from it, so an outbox written in the turn it becomes
/// urgent (16 KiB) holds far less than the limit.
const WINDOW: u64 = 16 * 1024;
/// Bytes of text per public line.
const TEXT: usize = 1000;
/// What the sender sends once the never-reading members are all cut.
const AFTER_THE_CUT: u64 = 4 << 20;
/// A bound on the whole run: the never-reading members must be cut before.
const AT_MOST: u64 = 64 << 20;

/// Connects and sends `name` (the server's `NAME` is read later, with the
/// rest).
fn connect(addr: SocketAddr, name: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(format!("{name}\n").as_bytes())
        .expect("send the name");
    stream
}

/// The text of the sender's line number `seq`.
fn text(seq: u64) -> String {
    format!("{seq:08} {}", "x".repeat(TEXT - 9))
}

/// A member that reads everything it is sent, on a non-blocking socket.
struct Reader {
    name: String,
    stream: MioStream,
    /// An unfinished line.
    partial: Vec<u8>,
    /// The sender's lines received, checked in order.
    from_sender: u64,
    /// `... has left the chat.` lines received.
    left_notices: usize,
    /// The server closed the connection.
    cut: bool,
}

impl Reader {
    fn new(stream: TcpStream, name: &str) -> Self {
        stream.set_nonblocking(true).expect("non-blocking");
        Reader {
            name: name.to_owned(),
            stream: MioStream::from_std(stream),
            partial: Vec::new(),
            from_sender: 0,
            left_notices: 0,
            cut: false,
        }
    }

    /// Reads all there is (the poll is edge-triggered), line by line.
    fn drain(&mut self, chunk: &mut [u8]) {
        while !self.cut {
            match self.stream.read(chunk) {
                Ok(0) => self.cut = true,
                Ok(n) => {
                    self.partial.extend_from_slice(&chunk[..n]);
                    let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
                        Some(i) => i + 1,
                        None => continue,
                    };
                    let lines: Vec<u8> = self.partial.drain(..complete).collect();
                    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        self.line(std::str::from_utf8(line).expect("UTF-8 lines"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.cut = true,
                Err(e) => panic!("{}: read failed: {e}", self.name),
            }
        }
    }

    fn line(&mut self, line: &str) {
        if let Some(said) = line.strip_prefix("sender: ") {
            assert_eq!(
                said,
                text(self.from_sender),
                "{}: the sender's lines in order",
                self.name
            );
            self.from_sender += 1;
        } else if line.ends_with(" has left the chat.") {
            self.left_notices += 1;
        }
    }
}

/// The sender's writing side: lines not yet written, and how many were
/// made.
#[derive(Default)]
struct Outgoing {
    bytes: Vec<u8>,
    lines: u64,
}

impl Outgoing {
    /// Writes as much as the socket takes.
    fn write(&mut self, stream: &mut MioStream) -> io::Result<()> {
        while !self.bytes.is_empty() {
            match stream.write(&self.bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[test]
fn members_that_keep_up_are_never_cut_while_those_that_never_read_are() {
    let server = TestServer::with_event_loops(1, ServerConfig::default().queue_bytes(QUEUE_BYTES));
    let never: Vec<TcpStream> = (0..NEVER_READERS)
        .map(|i| connect_never_reading(server.addr, &format!("nr{i}")))
        .collect();
    wait_until(
        || server.room.len() == NEVER_READERS,
        "never-readers to join",
    );
    let mut readers: Vec<Reader> = (0..LISTENERS)
        .map(|i| format!("listener{i}"))
        .chain(["sender".to_owned()])
        .map(|name| Reader::new(connect(server.addr, &name), &name))
        .collect();
    let members = NEVER_READERS + readers.len();
    wait_until(|| server.room.len() == members, "everyone to join");

    let mut poll = Poll::new().expect("poll");
    let sender = readers.len() - 1;
    for (i, reader) in readers.iter_mut().enumerate() {
        let interest = if i == sender {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .register(&mut reader.stream, Token(i), interest)
            .expect("register");
    }
    let line_bytes = (TEXT + 1) as u64;
    let mut out = Outgoing::default();
    let mut events = Events::with_capacity(64);
    let mut chunk = vec![0; 64 * 1024];
    // Lines to send in all: unknown until the never-readers are all cut.
    let mut last: Option<u64> = None;
    loop {
        let echoed = readers[sender].from_sender;
        let end = last.unwrap_or(u64::MAX);
        while out.lines < end && (out.lines + 1 - echoed) * line_bytes <= WINDOW {
            out.bytes
                .extend_from_slice(format!("{}\n", text(out.lines)).as_bytes());
            out.lines += 1;
        }
        if let Err(e) = out.write(&mut readers[sender].stream) {
            readers[sender].cut = true;
            eprintln!("sender: write failed: {e}");
        }
        if readers.iter().any(|r| r.cut) {
            break;
        }
        if last.is_some_and(|last| readers.iter().all(|r| r.from_sender == last)) {
            break;
        }
        if last.is_none() && server.room.len() == readers.len() {
            last = Some(out.lines + AFTER_THE_CUT / line_bytes);
        }
        assert!(
            out.lines * line_bytes < AT_MOST,
            "the never-reading members were not cut"
        );
        poll.poll(&mut events, Some(TIMEOUT)).expect("poll");
        assert!(!events.is_empty(), "no progress within {TIMEOUT:?}");
        for event in &events {
            if let Some(reader) = readers.get_mut(event.token().0) {
                reader.drain(&mut chunk);
            }
        }
    }

    let cut: Vec<&str> = readers
        .iter()
        .filter(|r| r.cut)
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        cut.is_empty(),
        "members that read everything were cut: {cut:?}"
    );
    let mut online = server.room.member_names();
    online.sort();
    let mut names: Vec<Arc<str>> = readers.iter().map(|r| Arc::from(&*r.name)).collect();
    names.sort();
    assert_eq!(online, names);
    for reader in &readers {
        assert_eq!(reader.left_notices, NEVER_READERS, "{}", reader.name);
    }
    // Each never-reading connection was closed: reading what the server
    // had sent comes to its end.
    let mut never: Vec<Reader> = never
        .into_iter()
        .enumerate()
        .map(|(i, stream)| Reader::new(stream, &format!("nr{i}")))
        .collect();
    let mut poll = Poll::new().expect("poll");
    for (i, reader) in never.iter_mut().enumerate() {
        poll.registry()
            .register(&mut reader.stream, Token(i), Interest::READABLE)
            .expect("register");
        reader.drain(&mut chunk);
    }
    while let Some(open) = never.iter().find(|r| !r.cut) {
        let name = open.name.clone();
        poll.poll(&mut events, Some(TIMEOUT)).expect("poll");
        assert!(!events.is_empty(), "{name}: not cut by the server");
        for event in &events {
            never[event.token().0].drain(&mut chunk);
        }
    }
}
