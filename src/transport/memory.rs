//! An in-memory transport: bounded pipes inside one process.
//!
//! [`MemoryTransport::new`] gives the server side and a [`MemoryConnector`];
//! each [`MemoryConnector::connect`] makes a [`MemoryClient`] that a test (or
//! an embedding program) drives like a socket, with no network at all. Pipes
//! are bounded, so a client that never reads backs the server up exactly as
//! a TCP peer would.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Connection, ReadHalf, Transport, WriteHalf};

/// How many bytes each direction of a memory connection buffers by default.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;

/// One direction of a connection.
#[derive(Debug)]
struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct PipeState {
    bytes: VecDeque<u8>,
    /// The writer is done: readers get the rest, then end of stream.
    write_closed: bool,
    /// The reader is done: reads return end of stream, writes fail.
    read_closed: bool,
}

impl Pipe {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Pipe {
            state: Mutex::new(PipeState::default()),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        })
    }

    fn read(&self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.state.lock();
        loop {
            if state.read_closed {
                return Ok(0);
            }
            if !state.bytes.is_empty() {
                let n = buf.len().min(state.bytes.len());
                for (slot, byte) in buf.iter_mut().zip(state.bytes.drain(..n)) {
                    *slot = byte;
                }
                self.changed.notify_all();
                return Ok(n);
            }
            if state.write_closed {
                return Ok(0);
            }
            wait(&self.changed, &mut state, deadline)?;
        }
    }

    fn write(&self, buf: &[u8], timeout: Option<Duration>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.state.lock();
        loop {
            if state.read_closed || state.write_closed {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"));
            }
            let room = self.capacity - state.bytes.len();
            if room > 0 {
                let n = room.min(buf.len());
                state.bytes.extend(&buf[..n]);
                self.changed.notify_all();
                return Ok(n);
            }
            wait(&self.changed, &mut state, deadline)?;
        }
    }

    fn close_write(&self) {
        self.state.lock().write_closed = true;
        self.changed.notify_all();
    }

    fn close_read(&self) {
        let mut state = self.state.lock();
        state.read_closed = true;
        state.bytes.clear();
        drop(state);
        self.changed.notify_all();
    }
}

/// Waits on `changed` until notified or `deadline`; past it, `WouldBlock`.
fn wait(
    changed: &Condvar,
    state: &mut parking_lot::MutexGuard<'_, PipeState>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    match deadline {
        None => {
            changed.wait(state);
            Ok(())
        }
        Some(deadline) => {
            if Instant::now() >= deadline || changed.wait_until(state, deadline).timed_out() {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"))
            } else {
                Ok(())
            }
        }
    }
}

#[derive(Debug, Default)]
struct Backlog {
    pending: VecDeque<MemoryConnection>,
    wakes: usize,
}

#[derive(Debug)]
struct Shared {
    backlog: Mutex<Backlog>,
    arrived: Condvar,
    capacity: usize,
    next_id: AtomicU64,
}

/// The server side of the in-memory transport.
#[derive(Debug)]
pub struct MemoryTransport {
    shared: Arc<Shared>,
}

/// Makes connections to a [`MemoryTransport`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    shared: Arc<Shared>,
}

impl MemoryTransport {
    /// A transport whose pipes buffer [`DEFAULT_PIPE_CAPACITY`] bytes each
    /// way, and the connector that reaches it.
    pub fn new() -> (MemoryTransport, MemoryConnector) {
        Self::with_pipe_capacity(DEFAULT_PIPE_CAPACITY)
    }

    /// Like [`MemoryTransport::new`], with pipes of `capacity` bytes.
    pub fn with_pipe_capacity(capacity: usize) -> (MemoryTransport, MemoryConnector) {
        let shared = Arc::new(Shared {
            backlog: Mutex::new(Backlog::default()),
            arrived: Condvar::new(),
            capacity,
            next_id: AtomicU64::new(1),
        });
        (
            MemoryTransport {
                shared: shared.clone(),
            },
            MemoryConnector { shared },
        )
    }
}

impl Transport for MemoryTransport {
    type Connection = MemoryConnection;

    fn accept(&self) -> io::Result<MemoryConnection> {
        let mut backlog = self.shared.backlog.lock();
        loop {
            if let Some(connection) = backlog.pending.pop_front() {
                return Ok(connection);
            }
            if backlog.wakes > 0 {
                backlog.wakes -= 1;
                return Err(io::Error::new(io::ErrorKind::Interrupted, "woken"));
            }
            self.shared.arrived.wait(&mut backlog);
        }
    }

    fn wake(&self) {
        self.shared.backlog.lock().wakes += 1;
        self.shared.arrived.notify_all();
    }
}

impl MemoryConnector {
    /// Opens a connection; the server sees it at its next accept.
    pub fn connect(&self) -> MemoryClient {
        let to_server = Pipe::new(self.shared.capacity);
        let to_client = Pipe::new(self.shared.capacity);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = MemoryConnection {
            id,
            from_client: to_server.clone(),
            to_client: to_client.clone(),
        };
        let mut backlog = self.shared.backlog.lock();
        backlog.pending.push_back(connection);
        drop(backlog);
        self.shared.arrived.notify_all();
        MemoryClient {
            to_server,
            from_server: to_client,
            read_timeout: None,
            write_timeout: None,
        }
    }
}

/// The server's end of one memory connection.
#[derive(Debug)]
pub struct MemoryConnection {
    id: u64,
    from_client: Arc<Pipe>,
    to_client: Arc<Pipe>,
}

impl Connection for MemoryConnection {
    type Reader = MemoryReader;
    type Writer = MemoryWriter;

    fn split(self) -> io::Result<(MemoryReader, MemoryWriter)> {
        let reader = MemoryReader {
            from_client: self.from_client.clone(),
            timeout: None,
        };
        let writer = MemoryWriter {
            from_client: self.from_client,
            to_client: self.to_client,
            timeout: None,
        };
        Ok((reader, writer))
    }

    fn peer(&self) -> String {
        format!("memory#{}", self.id)
    }
}

/// The server's reading half of a memory connection.
#[derive(Debug)]
pub struct MemoryReader {
    from_client: Arc<Pipe>,
    timeout: Option<Duration>,
}

impl Read for MemoryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from_client.read(buf, self.timeout)
    }
}

impl ReadHalf for MemoryReader {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}

impl Drop for MemoryReader {
    fn drop(&mut self) {
        self.from_client.close_read();
    }
}

/// The server's writing half of a memory connection.
#[derive(Debug)]
pub struct MemoryWriter {
    from_client: Arc<Pipe>,
    to_client: Arc<Pipe>,
    timeout: Option<Duration>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_client.write(buf, self.timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for MemoryWriter {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.to_client.close_write();
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.from_client.close_read();
        }
        Ok(())
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        self.to_client.close_write();
    }
}

/// The client's end of a memory connection: a blocking byte stream with
/// timeouts, plus a line reader for tests.
#[derive(Debug)]
pub struct MemoryClient {
    to_server: Arc<Pipe>,
    from_server: Arc<Pipe>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl MemoryClient {
    /// Bounds each following read.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Bounds each following write.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Ends the client's input to the server (a half-close).
    pub fn shutdown_write(&self) {
        self.to_server.close_write();
    }
}

impl Read for MemoryClient {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from_server.read(buf, self.read_timeout)
    }
}

impl Write for MemoryClient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_server.write(buf, self.write_timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemoryClient {
    fn drop(&mut self) {
        self.to_server.close_write();
        self.from_server.close_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_flow_both_ways_and_half_close_ends_input() {
        let (transport, connector) = MemoryTransport::new();
        let mut client = connector.connect();
        let (mut reader, mut writer) = transport.accept().expect("accept").split().expect("split");
        client.write_all(b"ping").expect("write");
        client.shutdown_write();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"ping");
        writer.write_all(b"pong").expect("write");
        writer.shutdown(Shutdown::Write).expect("shutdown");
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"pong");
    }

    #[test]
    fn a_full_pipe_times_out_the_writer() {
        let (transport, connector) = MemoryTransport::with_pipe_capacity(4);
        let _client = connector.connect();
        let (_reader, mut writer) = transport.accept().expect("accept").split().expect("split");
        writer
            .set_write_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        assert_eq!(writer.write(b"abcdef").expect("partial"), 4);
        let err = writer.write(b"x").expect_err("full");
        assert!(crate::transport::is_timeout(&err));
    }

    #[test]
    fn shutdown_read_wakes_a_blocked_reader() {
        let (transport, connector) = MemoryTransport::new();
        let _client = connector.connect();
        let (mut reader, writer) = transport.accept().expect("accept").split().expect("split");
        let handle = std::thread::spawn(move || reader.read(&mut [0; 8]));
        writer.shutdown(Shutdown::Read).expect("shutdown");
        assert_eq!(handle.join().expect("thread").expect("read"), 0);
    }

    #[test]
    fn wake_interrupts_accept() {
        let (transport, _connector) = MemoryTransport::new();
        transport.wake();
        assert!(transport.accept().is_err());
    }
}
