//! A TCP proxy between one node and nats-server, on 127.0.0.1 port 0, that
//! can cut that node off from NATS while every other node keeps it: a
//! network partition of one node. Cut, it forwards nothing either way
//! (bytes wait, as on a link that went dead, and the sockets stay open)
//! and connects nobody new; healed, it carries on where it stopped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often a stalled pump looks again (a cut lasts seconds).
const STALL: Duration = Duration::from_millis(5);

/// The proxy; it stops accepting on drop (its connections end with
/// either side's).
pub struct NatsProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    /// When bytes last went through, either way.
    last_traffic: Arc<Mutex<Instant>>,
}

impl NatsProxy {
    /// Forwards connections to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> NatsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let last_traffic = Arc::new(Mutex::new(Instant::now()));
        let (c, d, t) = (cut.clone(), closed.clone(), last_traffic.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let cut = c.clone();
                let traffic = t.clone();
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
                    let (up, up_traffic) = (cut.clone(), traffic.clone());
                    thread::spawn(move || pump(client, server, &up, &up_traffic));
                    pump(s2, c2, &cut, &traffic);
                });
            }
        });
        NatsProxy {
            addr,
            cut,
            closed,
            last_traffic,
        }
    }

    /// The URL a node behind this proxy connects to.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Cuts every connection through it (and any new one) off.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Cuts every connection off at the first moment nothing has gone
    /// through for `quiet` (within `within`, or fails the test); returns
    /// that moment. Whatever NATS last told the node, it told it `quiet`
    /// before the cut or earlier.
    pub fn cut_when_quiet(&self, quiet: Duration, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            {
                // Held while cutting: no byte goes through meanwhile.
                let last = self.last_traffic.lock().expect("the proxy's clock");
                if last.elapsed() >= quiet {
                    self.cut();
                    return Instant::now();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the link to NATS was never quiet for {quiet:?}"
            );
            thread::sleep(STALL);
        }
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
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, traffic: &Mutex<Instant>) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        wait_while(cut);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Stamped under the lock that a cut takes, so that a cut never
        // falls between a stamp and its write.
        loop {
            wait_while(cut);
            let Ok(mut last) = traffic.lock() else { return };
            if !cut.load(Ordering::SeqCst) {
                *last = Instant::now();
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
