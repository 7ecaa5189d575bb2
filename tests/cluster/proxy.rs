//! A TCP proxy between one node and nats-server, on 127.0.0.1 port 0, that
//! can cut that node off from NATS while every other node keeps it: a
//! network partition of one node. Cut, it forwards nothing either way
//! (bytes wait, as on a link that went dead, and the sockets stay open)
//! and connects nobody new; healed, it carries on where it stopped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How often a stalled pump looks again (a cut lasts seconds).
const STALL: Duration = Duration::from_millis(5);

/// The proxy; it stops accepting on drop (its connections end with
/// either side's).
pub struct NatsProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl NatsProxy {
    /// Forwards connections to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> NatsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let (c, d) = (cut.clone(), closed.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let cut = c.clone();
                thread::spawn(move || {
                    wait_while(&cut);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let up = cut.clone();
                    thread::spawn(move || pump(client, server, &up));
                    pump(s2, c2, &cut);
                });
            }
        });
        NatsProxy { addr, cut, closed }
    }

    /// The URL a node behind this proxy connects to.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Cuts every connection through it (and any new one) off.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for NatsProxy {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.heal();
        // Wakes the accepting thread, which then sees `closed`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn wait_while(cut: &AtomicBool) {
    while cut.load(Ordering::SeqCst) {
        thread::sleep(STALL);
    }
}

/// Copies `from` to `to`, holding each read while the proxy is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        wait_while(cut);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while(cut);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
