//! A room back end whose name claims are answered later, over real TCP
//! connections and both drivers: the input a client sends while its claim
//! is pending waits, and goes on once the answer comes; the name timeout
//! and the end of a connection give a pending claim up.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use chatcore::protocol::{validate_name, Reply};
use chatcore::room::{Claim, JoinTicket, Room, RoomBackend};
use chatcore::{
    ChatRoom, JoinError, MemberId, Outbox, RoomError, Server, ServerConfig, ServerError, Shutdown,
    TcpTransport,
};
use common::{wait_until, Client, Io, IO_MODES, TIMEOUT};

/// A claim waiting for its answer: its ticket, the name, the outbox.
type Pending = (Arc<JoinTicket>, String, Arc<Outbox>);

/// Claims wait for the test to answer; the rest is relayed at once.
#[derive(Debug)]
struct Later {
    local: Arc<ChatRoom>,
    claims: Mutex<Vec<Pending>>,
    names: Mutex<HashMap<MemberId, String>>,
    left: Mutex<Vec<MemberId>>,
}

impl Later {
    fn new() -> Arc<Self> {
        Arc::new(Later {
            local: Arc::new(ChatRoom::relayed()),
            claims: Mutex::default(),
            names: Mutex::default(),
            left: Mutex::default(),
        })
    }

    fn pending(&self) -> usize {
        self.claims.lock().unwrap().len()
    }

    /// Waits for a claim and answers it.
    fn answer(&self, join: bool) {
        wait_until(|| self.pending() > 0, "a claim");
        let (ticket, name, outbox) = self.claims.lock().unwrap().remove(0);
        if join {
            let id = ticket.member();
            self.names.lock().unwrap().insert(id, name.clone());
            self.local
                .relay_join(id, &name, outbox, b"")
                .expect("the join");
            ticket.resolve(Ok(()));
        } else {
            ticket.resolve(Err(JoinError::NameTaken(name)));
        }
    }

    fn left(&self) -> usize {
        self.left.lock().unwrap().len()
    }
}

impl RoomBackend for Later {
    fn local(&self) -> &Arc<ChatRoom> {
        &self.local
    }

    fn claim(&self, name: &str, outbox: &Arc<Outbox>) -> Claim {
        if let Err(error) = validate_name(name) {
            return Claim::Refused(error.into());
        }
        let ticket = JoinTicket::new(self.local.reserve_id(), outbox);
        self.claims
            .lock()
            .unwrap()
            .push((ticket.clone(), name.to_owned(), outbox.clone()));
        Claim::Pending(ticket)
    }

    fn say(&self, from: MemberId, texts: &[&str]) -> Result<(), RoomError> {
        let name = self.names.lock().unwrap().get(&from).cloned();
        let name = name.ok_or(RoomError::NotMember(from))?;
        self.local.relay_said(&name, texts);
        Ok(())
    }

    fn whisper(&self, _: MemberId, target: &str, _: &str) -> Result<(), RoomError> {
        Err(RoomError::UserNotFound(target.to_owned()))
    }

    fn list(&self, from: MemberId, _: &Arc<Outbox>) -> Result<(), RoomError> {
        let names: Vec<String> = self.names.lock().unwrap().values().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.local
            .relay_private(from, &Reply::UserList(&names).encode(), true);
        Ok(())
    }

    fn reply(&self, from: MemberId, _: &Arc<Outbox>, line: Bytes) -> Result<(), RoomError> {
        self.local.relay_private(from, &line, false);
        Ok(())
    }

    fn leave(&self, id: MemberId, outbox: &Arc<Outbox>) {
        self.left.lock().unwrap().push(id);
        let name = self.names.lock().unwrap().remove(&id);
        match name {
            Some(name) => {
                self.local.relay_left(Some(id), &name);
            }
            None => outbox.close(),
        }
    }
}

struct LaterServer {
    addr: SocketAddr,
    room: Arc<Later>,
    shutdown: Shutdown,
    stopped: mpsc::Receiver<Result<(), ServerError>>,
}

impl LaterServer {
    fn start(io: Io, config: ServerConfig) -> Self {
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = transport.local_addr();
        let room = Later::new();
        let server = Server::with_room(transport, config, Room::backend(room.clone()));
        let shutdown = server.shutdown_handle();
        let (tx, stopped) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(match io {
                Io::Threads => server.run(),
                Io::Events => server.run_event_loops(2),
            });
        });
        LaterServer {
            addr,
            room,
            shutdown,
            stopped,
        }
    }

    fn connect(&self, name: &str) -> Client {
        let mut client = Client::connect(self.addr);
        client.name = name.to_owned();
        client.expect("NAME");
        client
    }
}

impl Drop for LaterServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.stopped.recv_timeout(TIMEOUT);
    }
}

#[test]
fn lines_sent_before_the_answer_go_on_once_it_comes() {
    for &io in IO_MODES {
        let server = LaterServer::start(io, ServerConfig::default());
        let mut ana = server.connect("ana");
        ana.send(b"ana\nfirst\n\\help\nsecond\n");
        server.room.answer(true);
        for line in [
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: first",
            "Commands: \\w <name> <message>, \\list, \\help, QUIT",
            "ana: second",
        ] {
            ana.expect(line);
        }
        ana.send_line("\\list");
        ana.expect("Users online (1): ana");
        ana.send_line("QUIT");
        ana.expect_closed();
        wait_until(|| server.room.left() == 1, "ana's leave");
    }
}

#[test]
fn a_flood_during_the_claim_is_all_handled_after_it() {
    // Far more than one read, sent at once with the name: the first read
    // holds the name and many lines, which wait for the answer; the driver
    // reads no more while the claim is pending, and reads on after it.
    const LINES: usize = 20_000;
    for &io in IO_MODES {
        let server = LaterServer::start(io, ServerConfig::default());
        let mut ana = server.connect("ana");
        let mut flood = b"ana\n".to_vec();
        for i in 0..LINES {
            flood.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let mut writer = ana.stream().try_clone().expect("a clone");
        let sender = thread::spawn(move || {
            use std::io::Write;
            writer.write_all(&flood).expect("the flood is sent");
        });
        server.room.answer(true);
        ana.expect("Welcome to the chat, ana!");
        ana.expect("ana has joined the chat.");
        for i in 0..LINES {
            ana.expect(&format!("ana: line {i}"));
        }
        sender.join().expect("the sender");
    }
}

#[test]
fn a_taken_name_is_asked_again() {
    for &io in IO_MODES {
        let server = LaterServer::start(io, ServerConfig::default());
        let mut ana = server.connect("ana");
        ana.send(b"ana\nbob\nhi\n");
        server.room.answer(false);
        ana.expect("Name 'ana' is already taken.");
        ana.expect("NAME");
        server.room.answer(true);
        ana.expect("Welcome to the chat, bob!");
        ana.expect("bob has joined the chat.");
        ana.expect("bob: hi");
    }
}

#[test]
fn the_name_timeout_gives_a_pending_claim_up() {
    for &io in IO_MODES {
        let config = ServerConfig::default().name_timeout(Duration::from_millis(300));
        let server = LaterServer::start(io, config);
        let mut ana = server.connect("ana");
        ana.send_line("ana");
        wait_until(|| server.room.pending() == 1, "the claim");
        ana.expect("Timed out waiting for a name.");
        ana.expect_closed();
        wait_until(|| server.room.left() == 1, "the claim given up");
    }
}

#[test]
fn a_connection_that_ends_during_its_claim_gives_it_up() {
    for &io in IO_MODES {
        let server = LaterServer::start(io, ServerConfig::default());
        let mut ana = server.connect("ana");
        ana.send_line("ana");
        wait_until(|| server.room.pending() == 1, "the claim");
        ana.shutdown_write();
        // The end of input is seen once the claim is answered (nothing is
        // read while it is pending): the member then leaves.
        server.room.answer(true);
        wait_until(|| server.room.left() == 1, "the leave");
    }
}

#[test]
fn a_shutdown_during_a_claim_says_so() {
    for &io in IO_MODES {
        let server = LaterServer::start(io, ServerConfig::default());
        let mut ana = server.connect("ana");
        ana.send_line("ana");
        wait_until(|| server.room.pending() == 1, "the claim");
        server.shutdown.trigger();
        ana.expect("Server is shutting down.");
        ana.expect_closed();
        wait_until(|| server.room.left() == 1, "the claim given up");
    }
}
