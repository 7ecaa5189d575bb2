//! The slow-consumer policy over every transport (PROTOCOL.md, "Leaving,
//! limits and shutdown"): a member that never reads is cut once its queue
//! would overflow, and leaves like any other (over WebSocket with a close
//! frame, 1008, if its socket has room for one), while members that read
//! keep getting every line, in order.

mod common;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use chatcore::ServerConfig;
use common::{Case, Client, TestServer, IO_MODES, TIMEOUT, TRANSPORTS};

/// A count that threads raise and others wait on.
#[derive(Default)]
struct Counter {
    value: Mutex<u64>,
    changed: Condvar,
}

impl Counter {
    fn add(&self) {
        *self.value.lock().expect("counter lock") += 1;
        self.changed.notify_all();
    }

    fn get(&self) -> u64 {
        *self.value.lock().expect("counter lock")
    }

    /// Waits until the count is at least `n`; fails after [`TIMEOUT`].
    fn wait_at_least(&self, n: u64, what: &str) -> u64 {
        let deadline = Instant::now() + TIMEOUT;
        let mut value = self.value.lock().expect("counter lock");
        while *value < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "stalled: {what} stuck at {}", *value);
            value = self.changed.wait_timeout(value, left).expect("lock").0;
        }
        *value
    }
}

/// The text of the `i`th flood line, about 1 KiB.
fn flood_text(i: u64) -> String {
    format!("{i} {}", "x".repeat(1000))
}

/// Reads a member's flood: `<sender>: <i> …` in order from 0, with a leave
/// notice of each of `slow` among them, up to `<sender>: done`. Returns the
/// client, how many flood lines it got, and how many leave notices of each
/// of `slow`.
fn spawn_flood_reader(
    mut client: Client,
    sender: &'static str,
    slow: Vec<String>,
    received: Arc<Counter>,
    leaves: Arc<Counter>,
) -> JoinHandle<(Client, u64, Vec<u64>)> {
    thread::spawn(move || {
        let left: Vec<String> = slow
            .iter()
            .map(|name| format!("{name} has left the chat."))
            .collect();
        let done = format!("{sender}: done");
        let prefix = format!("{sender}: ");
        let mut next = 0u64;
        let mut left_seen = vec![0u64; slow.len()];
        loop {
            let line = client.line();
            if let Some(who) = left.iter().position(|l| *l == line) {
                left_seen[who] += 1;
                leaves.add();
            } else if line == done {
                return (client, next, left_seen);
            } else {
                let text = line
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", client.name));
                assert_eq!(
                    text,
                    flood_text(next),
                    "{}: flood line out of order or lost",
                    client.name
                );
                next += 1;
                received.add();
            }
        }
    })
}

#[test]
fn members_that_never_read_are_disconnected_while_others_keep_flowing() {
    /// Flood lines the sender may have sent beyond what every reader got:
    /// ~48 KiB, under the 64 KiB queues, so that no reader can overflow.
    const WINDOW: u64 = 48;
    /// Give up if a never-reading member outlasts this many lines.
    const MAX_LINES: u64 = 50_000;

    // One flood per I/O mode: the flooder sends over TCP (raw writes, as
    // fast as its socket takes them); an observer that reads everything and
    // a member that never reads over each transport.
    for &io in IO_MODES {
        let _case = Case::new(format!("{io:?}"));
        let config = ServerConfig::default().queue_bytes(64 * 1024);
        let server = TestServer::with_transports(io, config);
        let mut readers = vec![server.join("flooder")];
        for &kind in TRANSPORTS {
            let name = format!("observer-{kind}");
            let observer = server.join_over(kind, &name);
            for earlier in &mut readers {
                earlier.expect(&format!("{name} has joined the chat."));
            }
            readers.push(observer);
        }
        let slow_names: Vec<String> = TRANSPORTS.iter().map(|k| format!("slow-{k}")).collect();
        let mut slow: Vec<Client> = Vec::new();
        for (&kind, name) in TRANSPORTS.iter().zip(&slow_names) {
            slow.push(server.join_over(kind, name));
            for reader in &mut readers {
                reader.expect(&format!("{name} has joined the chat."));
            }
        }
        // From here on the slow members read nothing.

        let mut out = readers[0].stream().try_clone().expect("clone");
        out.set_nodelay(true).expect("nodelay");
        let leaves = Arc::new(Counter::default());
        let mut received = Vec::new();
        let mut reader_threads = Vec::new();
        for reader in readers {
            let got = Arc::new(Counter::default());
            received.push(got.clone());
            let name = reader.name.clone();
            let thread =
                spawn_flood_reader(reader, "flooder", slow_names.clone(), got, leaves.clone());
            reader_threads.push((name, thread));
        }

        let every_leave = (received.len() * slow.len()) as u64;
        let started = Instant::now();
        let mut sent = 0u64;
        while leaves.get() < every_leave {
            assert!(
                sent < MAX_LINES,
                "members that never read were not disconnected after {sent} lines \
                 ({} of {every_leave} leave notices read)",
                leaves.get()
            );
            assert!(
                started.elapsed() < TIMEOUT,
                "flood too slow: {sent} lines in {TIMEOUT:?}"
            );
            let floor = sent.saturating_sub(WINDOW);
            let slowest = received
                .iter()
                .map(|got| got.wait_at_least(floor, "a reader's flood lines"))
                .min()
                .expect("readers");
            let allowed = slowest + WINDOW - sent;
            let mut burst = String::new();
            for i in sent..sent + allowed {
                burst.push_str(&flood_text(i));
                burst.push('\n');
            }
            out.write_all(burst.as_bytes()).expect("flood");
            sent += allowed;
        }
        out.write_all(b"done\n").expect("send done");

        let mut readers = Vec::new();
        for (who, thread) in reader_threads {
            let (client, got, left) = thread.join().expect("reader thread");
            assert_eq!(got, sent, "{who} lost flood lines");
            assert_eq!(
                left,
                vec![1; slow.len()],
                "{who}: leave notices of {slow_names:?}"
            );
            readers.push(client);
        }
        for client in &mut readers {
            client.expect_nothing_pending();
        }

        // Their names are free again.
        let mut again = Vec::new();
        for name in &slow_names {
            let member = server.join(name);
            for earlier in readers.iter_mut().chain(&mut again) {
                earlier.expect(&format!("{name} has joined the chat."));
            }
            again.push(member);
        }
        for member in &mut again {
            member.expect_nothing_pending();
        }

        // Each old connection got an in-order prefix of the flood, then its
        // end: over WebSocket maybe a close frame (1008), sent if its socket
        // had room for it; else a reset or an end without it.
        for mut client in slow {
            let kind = client.kind();
            let rest = client.read_until_cut();
            let rest = String::from_utf8_lossy(&rest);
            let complete = match rest.rfind('\n') {
                Some(end) => &rest[..end],
                None => "",
            };
            // Among the flood: the joins of the slow members after it, and
            // the leaves of those cut before it.
            let (flood, notices): (Vec<&str>, Vec<&str>) = complete
                .lines()
                .partition(|line| line.starts_with("flooder: "));
            for line in notices {
                assert!(
                    line.starts_with("slow-") && line.ends_with(" the chat."),
                    "over {kind}: unexpected {line:?}"
                );
            }
            for (i, line) in flood.into_iter().enumerate() {
                assert_eq!(
                    line,
                    format!("flooder: {}", flood_text(i as u64)),
                    "the stream of the member that never read over {kind}"
                );
            }
            if let Some(code) = client.close_code() {
                assert_eq!(code, 1008, "the close code of a slow consumer over {kind}");
            }
        }
    }
}
