//! The threaded driver (`Server::run`) serving the listeners added with
//! `Server::add_listener`: TLS, WS and WSS (and a second plain TCP port) in
//! one room with the server's own TCP transport, each listener on an accept
//! thread of its own and its layers on each connection's threads, with the
//! limits, close codes and shutdown PROTOCOL.md ("Transports") gives.
#![cfg(all(feature = "tls", feature = "websocket"))]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatcore::server::Listener;
use chatcore::transport::tls::TlsCertificate;
use chatcore::{Server, ServerConfig, ServerError, Shutdown, TcpTransport};
use socket2::{Domain, Socket, Type};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

use common::{Client, Kind, Trust, TIMEOUT};

/// A server on threads with a listener per transport (and a second plain
/// TCP listener), all on 127.0.0.1 port 0; stopped on drop.
struct Running {
    tcp: SocketAddr,
    tcp_listener: SocketAddr,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    trust: Trust,
    shutdown: Shutdown,
    stopped: Option<mpsc::Receiver<Result<(), ServerError>>>,
}

impl Running {
    fn start(config: ServerConfig) -> Self {
        Self::start_with(config, |_| {})
    }

    /// Starts the server after `more` has added listeners of its own.
    fn start_with(config: ServerConfig, more: impl FnOnce(&mut Server<TcpTransport>)) -> Self {
        let certificate = TlsCertificate::self_signed().expect("a self-signed certificate");
        let tls_config = certificate.server_config().expect("a TLS server config");
        let bind = || TcpTransport::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let mut server = Server::new(bind(), config);
        let tcp = server.transport().local_addr();
        let listeners = [
            Listener::tcp(bind()),
            Listener::tls(bind(), tls_config.clone()),
            Listener::ws(bind()),
            Listener::wss(bind(), tls_config),
        ];
        let addrs: Vec<SocketAddr> = listeners.iter().map(Listener::local_addr).collect();
        for listener in listeners {
            server.add_listener(listener);
        }
        more(&mut server);
        let shutdown = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server.run());
        });
        Running {
            tcp,
            tcp_listener: addrs[0],
            tls: addrs[1],
            ws: addrs[2],
            wss: addrs[3],
            trust: Trust::pinned(certificate.certificate_der().clone()),
            shutdown,
            stopped: Some(rx),
        }
    }

    fn addr(&self, kind: Kind) -> SocketAddr {
        match kind {
            Kind::Tcp => self.tcp,
            Kind::Tls => self.tls,
            Kind::Ws => self.ws,
            Kind::Wss => self.wss,
        }
    }

    fn connect(&self, kind: Kind) -> Client {
        Client::connect_over(kind, self.addr(kind), &self.trust)
    }

    /// A member over `kind` who joined as `name` (its own lines read).
    fn join(&self, kind: Kind, name: &str) -> Client {
        let mut client = self.connect(kind);
        client.name = format!("{name} ({kind})");
        client.expect("NAME");
        client.send_line(name);
        client.expect(&format!("Welcome to the chat, {name}!"));
        client.expect(&format!("{name} has joined the chat."));
        client.name = name.to_owned();
        client
    }

    /// Shuts the server down; what `run` returned (within the timeout).
    fn stop(&mut self) -> Result<(), ServerError> {
        self.shutdown.trigger();
        self.wait()
    }

    /// Waits for `run` to return, without triggering anything.
    fn wait(&mut self) -> Result<(), ServerError> {
        let rx = self.stopped.take().expect("stopped once");
        rx.recv_timeout(TIMEOUT)
            .expect("run did not return within the timeout")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(rx) = self.stopped.take() {
            let _ = rx.recv_timeout(TIMEOUT);
        }
    }
}

/// Reads until the server closes `stream` (an end of stream or a reset);
/// fails the test if it does not within [`TIMEOUT`]. Returns what it read.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

#[test]
fn members_on_every_listener_chat_in_one_room_in_one_order() {
    let mut server = Running::start(ServerConfig::default());
    let extra = server.tcp_listener;
    let mut members: Vec<Client> = Vec::new();
    let names = ["ana", "bo", "cy", "di", "ed"];
    for (i, name) in names.iter().enumerate() {
        let member = match i {
            0 => server.join(Kind::Tcp, name),
            1 => server.join(Kind::Tls, name),
            2 => server.join(Kind::Ws, name),
            3 => server.join(Kind::Wss, name),
            _ => {
                // The added plain TCP listener.
                let mut member = Client::connect(extra);
                member.expect("NAME");
                member.send_line(name);
                member.expect(&format!("Welcome to the chat, {name}!"));
                member.expect(&format!("{name} has joined the chat."));
                member.name = name.to_string();
                member
            }
        };
        for earlier in &mut members {
            earlier.expect(&format!("{name} has joined the chat."));
        }
        members.push(member);
    }
    for member in &mut members {
        let line = format!("hello from {}", member.name);
        member.send_line(&line);
    }
    let mut orders = Vec::new();
    for member in &mut members {
        orders.push((0..names.len()).map(|_| member.line()).collect::<Vec<_>>());
    }
    for order in &orders {
        assert_eq!(order, &orders[0], "every member sees one order");
    }
    let mut sorted = orders[0].clone();
    sorted.sort();
    let mut expected: Vec<String> = names
        .iter()
        .map(|name| format!("{name}: hello from {name}"))
        .collect();
    expected.sort();
    assert_eq!(sorted, expected);

    // A whisper across transports.
    members[2].send_line("\\w di psst");
    members[3].expect("priv(cy): psst");
    members[2].expect_nothing_pending();

    // QUIT closes with 1000 over WebSocket, cleanly everywhere.
    while let Some(mut member) = members.pop() {
        member.send_line("QUIT");
        member.expect_closed_with(1000);
        for other in &mut members {
            other.expect(&format!("{} has left the chat.", member.name));
        }
    }
    assert!(server.stop().is_ok());
}

#[test]
fn shutdown_says_so_and_closes_with_1001_then_every_port_refuses() {
    let mut server = Running::start(ServerConfig::default());
    let mut members: Vec<Client> = [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss]
        .iter()
        .map(|&kind| server.join(kind, &format!("m{kind}")))
        .collect();
    // A connection whose WebSocket handshake is done, without a name yet.
    let mut newcomer = server.connect(Kind::Wss);
    newcomer.expect("NAME");
    server.shutdown.trigger();
    for member in members.iter_mut().chain([&mut newcomer]) {
        let rest = member.read_until_closed();
        assert_eq!(
            rest.last().map(String::as_str),
            Some("Server is shutting down.")
        );
        if member.kind().is_websocket() {
            assert_eq!(member.close_code(), Some(1001), "{}", member.name);
        }
    }
    assert!(server.wait().is_ok());
    // `run` has returned: every listener is gone.
    let addrs = [
        server.tcp,
        server.tcp_listener,
        server.tls,
        server.ws,
        server.wss,
    ];
    for addr in addrs {
        let refused = TcpStream::connect(addr).map(drop).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{addr}");
    }
}

#[test]
fn a_name_timeout_closes_with_1008_after_the_handshake() {
    let config = ServerConfig::default().name_timeout(Duration::from_millis(300));
    let server = Running::start(config);
    let mut clients: Vec<Client> = [Kind::Tls, Kind::Ws, Kind::Wss]
        .iter()
        .map(|&kind| server.connect(kind))
        .collect();
    for client in &mut clients {
        client.expect("NAME");
        client.expect("Timed out waiting for a name.");
        client.expect_closed_with(1008);
    }
}

#[test]
fn the_client_limit_counts_every_listener_and_full_closes_with_1013() {
    let config = ServerConfig::default()
        .max_clients(2)
        .name_timeout(Duration::from_millis(500));
    let server = Running::start(config);
    let mut ana = server.join(Kind::Wss, "ana");
    let _bo = server.join(Kind::Tls, "bo");
    ana.expect("bo has joined the chat.");
    // Full, whatever the listener; told after the handshake.
    for kind in [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss] {
        let mut refused = server.connect(kind);
        refused.name = format!("refused ({kind})");
        refused.expect("Server is full.");
        refused.expect_closed_with(1013);
    }
    // A refused connection that never does its TLS handshake is closed at
    // the name timeout, counted from the TCP accept.
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.tls).expect("connect");
    let said = read_until_closed(&mut silent);
    assert!(nothing_but_an_alert(&said), "{said:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // The members were not disturbed.
    ana.send_line("still here");
    ana.expect("ana: still here");
}

#[test]
fn a_handshake_that_never_finishes_is_closed_at_the_name_timeout() {
    let timeout = Duration::from_millis(500);
    let server = Running::start(ServerConfig::default().name_timeout(timeout));
    let started = Instant::now();
    // Half a TLS record (a header promising 512 bytes, and one of them); an
    // HTTP request head cut short; a WSS client that says nothing.
    let mut tls = TcpStream::connect(server.tls).expect("connect");
    tls.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("send");
    let mut ws = TcpStream::connect(server.ws).expect("connect");
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("send");
    let mut wss = TcpStream::connect(server.wss).expect("connect");
    for stream in [&mut tls, &mut ws, &mut wss] {
        let said = read_until_closed(stream);
        assert!(nothing_but_an_alert(&said), "{said:?}");
        assert!(started.elapsed() >= timeout);
    }
    // A member gets on meanwhile: the handshakes stall nobody.
    let mut ana = server.join(Kind::Tls, "ana");
    ana.send_line("hi");
    ana.expect("ana: hi");
}

/// Whether a connection closed before its handshake was done said nothing
/// but, over TLS, one alert record (`close_notify`): no line, no HTTP
/// answer.
fn nothing_but_an_alert(said: &[u8]) -> bool {
    said.is_empty() || (said.len() == 7 && said[0] == 0x15 && said[3..5] == [0, 2])
}

/// Sends `stream` one byte of a handshake that never ends every 50 ms
/// until the server closes it; fails the test if it does not within
/// [`TIMEOUT`].
fn trickle_until_closed(stream: &mut TcpStream, byte: u8) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let deadline = Instant::now() + TIMEOUT;
    let mut chunk = [0; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) if nothing_but_an_alert(&chunk[..n]) => {}
            Ok(n) => panic!(
                "the server answered a handshake not done: {:?}",
                &chunk[..n]
            ),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    panic!("a handshake trickling in was not closed at the name timeout");
}

#[test]
fn a_handshake_trickling_in_is_closed_at_the_name_timeout() {
    let timeout = Duration::from_millis(500);
    let server = Running::start(ServerConfig::default().name_timeout(timeout));
    // A TLS record header promising 16 KiB, then its bytes one at a time.
    let mut tls = TcpStream::connect(server.tls).expect("connect");
    tls.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00])
        .expect("send");
    trickle_until_closed(&mut tls, 0);
    // An HTTP request head, one header byte at a time.
    let mut ws = TcpStream::connect(server.ws).expect("connect");
    ws.write_all(b"GET /ws HTTP/1.1\r\nX-Slow: ").expect("send");
    trickle_until_closed(&mut ws, b'a');
}

#[test]
fn a_stalled_handshake_does_not_stall_newcomers() {
    let server = Running::start(ServerConfig::default());
    // Connections that never start their handshakes, on each port.
    let stalled: Vec<TcpStream> = [server.tls, server.ws, server.wss]
        .iter()
        .flat_map(|&addr| (0..4).map(move |_| TcpStream::connect(addr).expect("connect")))
        .collect();
    for kind in [Kind::Tls, Kind::Ws, Kind::Wss] {
        let mut member = server.join(kind, &format!("m{kind}"));
        member.send_line("QUIT");
        member.expect_closed_with(1000);
    }
    drop(stalled);
}

#[test]
fn the_page_is_served_on_get_and_other_paths_are_404() {
    let server = Running::start(ServerConfig::default());
    let request =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut ws = TcpStream::connect(server.ws).expect("connect");
    ws.write_all(request("/").as_bytes()).expect("send");
    let page = String::from_utf8(read_until_closed(&mut ws)).expect("UTF-8");
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.80}");
    assert!(page.contains("id=\"line\"") && page.contains("id=\"log\""));

    let mut ws = TcpStream::connect(server.ws).expect("connect");
    ws.write_all(request("/nowhere").as_bytes()).expect("send");
    let answer = String::from_utf8(read_until_closed(&mut ws)).expect("UTF-8");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:.80}");

    // The same page over TLS.
    let tcp = TcpStream::connect(server.wss).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let config = server.trust.config().expect("a TLS client config");
    let name = rustls::pki_types::ServerName::from(server.wss.ip());
    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request("/").as_bytes()).expect("send");
    let mut page = Vec::new();
    match tls.read_to_end(&mut page) {
        Ok(_) => {}
        Err(e) => panic!("reading the page over TLS: {e}"),
    }
    let page = String::from_utf8(page).expect("UTF-8");
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.80}");
    assert!(page.contains("id=\"line\""));
}

#[test]
fn layer_errors_end_one_connection_and_the_member_leaves() {
    let server = Running::start(ServerConfig::default());
    let mut ana = server.join(Kind::Tcp, "ana");
    // A binary message: 1003, and the member leaves.
    let mut bo = server.join(Kind::Ws, "bo");
    ana.expect("bo has joined the chat.");
    let frame = Frame::message(vec![1, 2, 3], OpCode::Data(Data::Binary), true);
    bo.send_message(Message::Frame(frame));
    bo.expect_closed_with(1003);
    ana.expect("bo has left the chat.");
    // Invalid UTF-8 over WSS: 1007, after the lines before it.
    let mut cy = server.join(Kind::Wss, "cy");
    ana.expect("cy has joined the chat.");
    cy.send(b"fine\n\xff");
    // The echo cannot follow the close frame (1007) the layer sent first.
    let rest = cy.read_until_closed();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(cy.close_code(), Some(1007));
    ana.expect("cy: fine");
    ana.expect("cy has left the chat.");
    // Garbage on the TLS port: an alert at most, then the end.
    let mut garbage = TcpStream::connect(server.tls).expect("connect");
    garbage
        .write_all(b"HELLO? this is not TLS\r\n\r\n")
        .expect("send");
    let said = read_until_closed(&mut garbage);
    assert!(said.len() < 64, "{said:?}");
    // The TLS port still serves.
    let mut di = server.join(Kind::Tls, "di");
    ana.expect("di has joined the chat.");
    di.send_line("hi");
    di.expect("di: hi");
    ana.expect("di: hi");
}

/// A WebSocket member that never reads, with small socket buffers so that
/// the server's writes to it stall at once.
fn never_reading_websocket(addr: SocketAddr, name: &str) -> tungstenite::WebSocket<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    #[cfg(unix)]
    socket.set_tcp_mss(1024).expect("TCP_MAXSEG");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("upgrade");
    ws.send(Message::text(name)).expect("send the name");
    ws
}

#[test]
fn a_websocket_slow_consumer_is_cut() {
    let config = ServerConfig::default().queue_bytes(16 * 1024);
    let server = Running::start(config);
    let mut ana = server.join(Kind::Tcp, "ana");
    let mut slow = never_reading_websocket(server.ws, "slow");
    ana.expect("slow has joined the chat.");
    let text = "x".repeat(1000);
    let mut cut = false;
    for _ in 0..10_000 {
        ana.send_line(&text);
        let before = ana.read_until(&format!("ana: {text}"));
        if before.iter().any(|line| line == "slow has left the chat.") {
            cut = true;
            break;
        }
        assert!(before.is_empty(), "{before:?}");
    }
    assert!(cut, "the member that never reads was never cut");
    // What it had been sent, then (at best) a close frame 1008, then the
    // end: never a close that says all was well.
    loop {
        match slow.read() {
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                assert_eq!(code, Some(1008));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                panic!("the cut connection stayed open")
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::TimedOut => {
                panic!("the cut connection stayed open")
            }
            Err(_) => break,
        }
    }
}

/// Bug guard: an added listener that breaks ends `run` with its error,
/// like the server's own transport, and the other accept loops stop too.
#[cfg(target_os = "linux")]
#[test]
fn a_broken_listener_ends_run_with_its_error() {
    let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let handle = std_listener.try_clone().expect("clone");
    let transport = TcpTransport::from_listener(std_listener).expect("wrap");
    let mut server = Running::start_with(ServerConfig::default(), move |server| {
        server.add_listener(Listener::ws(transport));
    });
    let mut ana = server.join(Kind::Wss, "ana");
    // Linux: shutting a listening socket down stops it listening, and a
    // blocked accept fails with EINVAL.
    socket2::SockRef::from(&handle)
        .shutdown(std::net::Shutdown::Read)
        .expect("shutdown");
    match server.wait() {
        Err(ServerError::Accept(e)) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
        other => panic!("run returned {other:?}"),
    }
    let rest = ana.read_until_closed();
    assert_eq!(rest, ["Server is shutting down."]);
    assert_eq!(ana.close_code(), Some(1001));
}
