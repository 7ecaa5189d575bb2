//! The std TCP transport.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{Connection, ReadHalf, Transport, WriteHalf};

/// How long [`TcpTransport::wake`] waits to connect to its own listener.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts TCP connections on a std [`TcpListener`].
#[derive(Debug)]
pub struct TcpTransport {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl TcpTransport {
    /// Binds a listener (port 0 picks a free port; see
    /// [`TcpTransport::local_addr`]).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::from_listener(TcpListener::bind(addr)?)
    }

    /// Wraps a listener that is already bound.
    pub fn from_listener(listener: TcpListener) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        Ok(TcpTransport {
            listener,
            local_addr,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listener, for drivers that poll it themselves.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }
}

impl Transport for TcpTransport {
    type Connection = TcpConnection;

    fn accept(&self) -> io::Result<TcpConnection> {
        let (stream, peer) = self.listener.accept()?;
        // Chat lines are small and latency matters more than packet count;
        // the writer already coalesces what is queued into one write.
        stream.set_nodelay(true)?;
        Ok(TcpConnection { stream, peer })
    }

    /// Connects to the listener itself, so that a blocked `accept` returns.
    fn wake(&self) {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            match addr {
                SocketAddr::V4(_) => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
                SocketAddr::V6(_) => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            }
        }
        if let Err(error) = TcpStream::connect_timeout(&addr, WAKE_CONNECT_TIMEOUT) {
            log::warn!("could not wake the accept loop through {addr}: {error}");
        }
    }
}

/// One accepted TCP connection.
#[derive(Debug)]
pub struct TcpConnection {
    stream: TcpStream,
    peer: SocketAddr,
}

impl TcpConnection {
    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Unwraps the underlying stream.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

impl Connection for TcpConnection {
    type Reader = TcpStream;
    type Writer = TcpStream;

    fn split(self) -> io::Result<(TcpStream, TcpStream)> {
        let reader = self.stream.try_clone()?;
        Ok((reader, self.stream))
    }

    fn peer(&self) -> String {
        self.peer.to_string()
    }
}

impl ReadHalf for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl WriteHalf for TcpStream {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}
