//! Memory that does not multiply by members (issue 8), over real TCP on both
//! drivers: members that join and never read, and one member that sends
//! public lines flat out (never more than a window in flight) and reads
//! everything.
//!
//! Every public line goes once into the room's log. A never-reading member
//! holds the log back only until the room has moved its limit past it: then
//! it is cut. So while the sender sends, the log never holds more than about
//! one limit and a few chunks, however many members never read (the old
//! code held a full queue per member). The test asserts that bound on the
//! room's own figures after every read, who is cut (every never-reading
//! member, its connection reset) and who is not (the sender), and that the
//! sender gets every line in order. Nothing here measures time.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use chatcore::ServerConfig;
use common::{connect_never_reading, wait_until, Io, TestServer, IO_MODES, TIMEOUT};

/// Members that never read.
const NEVER_READERS: usize = 150;
/// The server's limit per member.
const QUEUE_BYTES: usize = 128 * 1024;
/// The sender's own bytes in flight at most.
const WINDOW: usize = 32 * 1024;
/// Bytes of text per public line.
const TEXT: usize = 1000;
/// What the sender sends once the never-reading members are all cut.
const AFTER_THE_CUT: usize = 1 << 20;
/// A bound on the whole run: the never-reading members must be cut before.
const AT_MOST: usize = 64 << 20;

/// The text of the sender's line number `seq`.
fn text(seq: usize) -> String {
    format!("{seq:08} {}", "x".repeat(TEXT - 9))
}

/// What the sender has read.
#[derive(Default)]
struct Heard {
    partial: Vec<u8>,
    own: usize,
    left: usize,
}

impl Heard {
    fn take(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let lines: Vec<u8> = self.partial.drain(..=end).collect();
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = std::str::from_utf8(line).expect("UTF-8 lines");
            if let Some(said) = line.strip_prefix("sender: ") {
                assert_eq!(said, text(self.own), "the sender's lines, in order");
                self.own += 1;
            } else if line.ends_with(" has left the chat.") {
                self.left += 1;
            }
        }
    }
}

fn run(io: Io) {
    let config = ServerConfig::default().queue_bytes(QUEUE_BYTES);
    let server = match io {
        Io::Events => TestServer::with_event_loops(2, config),
        Io::Threads => TestServer::with_config(io, config),
    };
    let sender = server.join("sender");
    let never: Vec<TcpStream> = (0..NEVER_READERS)
        .map(|i| connect_never_reading(server.addr, &format!("nr{i}")))
        .collect();
    wait_until(
        || server.room.len() == NEVER_READERS + 1,
        "everyone to join",
    );
    let mut stream = sender.stream().try_clone().expect("clone");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let line_bytes = TEXT + "sender: \n".len();
    let mut heard = Heard::default();
    let mut chunk = vec![0; 64 * 1024];
    let (mut sent, mut last) = (0, None);
    let mut most_kept = 0;
    loop {
        let end = last.unwrap_or(usize::MAX);
        let mut burst = String::new();
        while sent < end && (sent + 1 - heard.own) * line_bytes <= WINDOW {
            burst.push_str(&text(sent));
            burst.push('\n');
            sent += 1;
        }
        stream
            .write_all(burst.as_bytes())
            .expect("the sender writes");
        if last == Some(heard.own) {
            break;
        }
        assert!(
            sent * line_bytes < AT_MOST,
            "the never-reading members were not cut"
        );
        let n = match stream.read(&mut chunk) {
            Ok(0) => panic!("the sender was cut ({io:?})"),
            Ok(n) => n,
            Err(e) => panic!("the sender read nothing within {TIMEOUT:?}: {e}"),
        };
        heard.take(&chunk[..n]);
        let stats = server.room.log_stats();
        most_kept = most_kept.max(stats.chunk_bytes);
        // The largest event: a batch of the sender's lines.
        let batch = (16 * 1024).min(QUEUE_BYTES / 4) + line_bytes;
        assert!(
            stats.chunk_bytes <= stats.chunk_bound(batch as u64),
            "{io:?}: the room's log holds more than its bound: {stats:?}"
        );
        if last.is_none() && heard.left == NEVER_READERS {
            last = Some(sent + AFTER_THE_CUT / line_bytes);
        }
    }
    assert_eq!(server.room.member_names(), ["sender".into()]);
    assert_eq!(heard.left, NEVER_READERS);
    // The old code queued a copy of every line for every member: all of
    // them together would have held NEVER_READERS times the limit.
    assert!(
        most_kept < (NEVER_READERS * QUEUE_BYTES / 16) as u64,
        "{io:?}: {most_kept}"
    );
    // Each never-reading connection was reset: the bytes the server had
    // not sent were dropped, not left to its kernel (which would keep them
    // for a client that does not read, long after the socket is closed:
    // with thousands of such clients, enough to throttle every socket).
    for (i, mut stream) in never.into_iter().enumerate() {
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => panic!("nr{i}: closed, not reset ({io:?})"),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("nr{i}: not cut by the server ({io:?}): {e}"),
            }
        }
    }
}

#[test]
fn never_reading_members_are_cut_and_the_log_stays_within_its_bound() {
    for &io in IO_MODES {
        run(io);
    }
}
