//! A blocking [`Transport`] over any layer stack, for the threaded driver:
//! enough to serve the page, `ws` and `wss` to a real browser before the
//! event loops run layers themselves. Test support only: a `WriteHalf` is
//! not told why the server ends a connection, so the reason is guessed from
//! the last line sent (the real drivers know it from the outbox).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use chatcore::transport::layer::{CloseReason, Layer, LayerEvent};
use chatcore::transport::{Connection, ReadHalf, TcpTransport, Transport, WriteHalf};
use parking_lot::Mutex;

/// Makes the layers of each new connection.
pub type MakeLayer = Arc<dyn Fn() -> Box<dyn Layer> + Send + Sync>;

/// TCP connections, each behind the layers `make` builds.
pub struct LayeredTransport {
    tcp: TcpTransport,
    make: MakeLayer,
}

impl LayeredTransport {
    pub fn bind(make: MakeLayer) -> io::Result<Self> {
        Ok(LayeredTransport {
            tcp: TcpTransport::bind("127.0.0.1:0")?,
            make,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr()
    }
}

impl Transport for LayeredTransport {
    type Connection = LayeredConnection;

    fn accept(&self) -> io::Result<LayeredConnection> {
        let tcp = self.tcp.accept()?;
        Ok(LayeredConnection {
            peer: tcp.peer(),
            stream: tcp.into_stream(),
            layer: (self.make)(),
        })
    }

    fn wake(&self) {
        self.tcp.wake();
    }
}

pub struct LayeredConnection {
    stream: TcpStream,
    layer: Box<dyn Layer>,
    peer: String,
}

/// What both halves share: the layer, and the socket's writing side.
struct Shared {
    layer: Box<dyn Layer>,
    socket: TcpStream,
    established: bool,
    /// Lines the session sent before the handshake ended.
    early: Vec<u8>,
    /// Nothing more will be read: the layer finished or the peer closed.
    input_over: bool,
    /// The last line sent (its end), to tell why the connection closes.
    last_line: Vec<u8>,
}

impl Shared {
    /// Writes the layer's own output (and, once established, the early
    /// lines) to the socket.
    fn transmit(&mut self) -> io::Result<()> {
        let mut wire = BytesMut::new();
        while let Some(event) = self.layer.poll_event() {
            match event {
                LayerEvent::Established => {
                    self.established = true;
                    let early = std::mem::take(&mut self.early);
                    self.layer.send(&early, &mut wire);
                }
                LayerEvent::PeerClosed { .. } => self.input_over = true,
                _ => {}
            }
        }
        self.layer.poll_transmit(&mut wire);
        self.socket.write_all(&wire)?;
        if self.layer.is_finished() {
            self.input_over = true;
        }
        Ok(())
    }
}

impl Connection for LayeredConnection {
    type Reader = LayeredReader;
    type Writer = LayeredWriter;

    fn split(self) -> io::Result<(LayeredReader, LayeredWriter)> {
        let shared = Arc::new(Mutex::new(Shared {
            layer: self.layer,
            socket: self.stream.try_clone()?,
            established: false,
            early: Vec::new(),
            input_over: false,
            last_line: Vec::new(),
        }));
        let reader = LayeredReader {
            socket: self.stream.try_clone()?,
            shared: shared.clone(),
            input: BytesMut::new(),
            plain: BytesMut::new(),
        };
        Ok((
            reader,
            LayeredWriter {
                socket: self.stream,
                shared,
            },
        ))
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }
}

pub struct LayeredReader {
    socket: TcpStream,
    shared: Arc<Mutex<Shared>>,
    input: BytesMut,
    plain: BytesMut,
}

impl Read for LayeredReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut chunk = [0; 8192];
        loop {
            if !self.plain.is_empty() {
                let n = buf.len().min(self.plain.len());
                buf[..n].copy_from_slice(&self.plain[..n]);
                self.plain.advance(n);
                return Ok(n);
            }
            if self.shared.lock().input_over {
                return Ok(0);
            }
            let n = self.socket.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            self.input.extend_from_slice(&chunk[..n]);
            let mut shared = self.shared.lock();
            let result = shared.layer.receive(&mut self.input, &mut self.plain);
            shared.transmit()?;
            if let Err(error) = result {
                eprintln!("layer ended a connection: {error}");
                shared.input_over = true;
            }
        }
    }
}

impl ReadHalf for LayeredReader {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }
}

pub struct LayeredWriter {
    socket: TcpStream,
    shared: Arc<Mutex<Shared>>,
}

impl Write for LayeredWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut shared = self.shared.lock();
        if !shared.established {
            shared.early.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let line_start = buf[..buf.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        shared.last_line = buf[line_start..].to_vec();
        let mut wire = BytesMut::new();
        shared.layer.send(buf, &mut wire);
        shared.socket.write_all(&wire)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for LayeredWriter {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_write_timeout(timeout)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            let mut shared = self.shared.lock();
            let reason = match &shared.last_line[..] {
                b"Server is shutting down.\n" => CloseReason::Shutdown,
                b"Server is full.\n" => CloseReason::Full,
                b"Timed out waiting for a name.\n" => CloseReason::Policy,
                _ => CloseReason::Normal,
            };
            shared.layer.close(reason);
            let _ = shared.transmit();
        }
        self.socket.shutdown(how)
    }
}
