//! The std TCP transport.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Connection, ReadHalf, Transport, WriteHalf};

/// How long [`TcpTransport::wake`] waits to connect to its own listener.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest backlog `listen` takes (its argument is a C `int`). Asking for
/// it means "the system's maximum": Linux caps the backlog at
/// `net.core.somaxconn`, BSD and macOS at `kern.ipc.somaxconn`, and on
/// Windows this value is `SOMAXCONN`, "a reasonable maximum".
const LISTEN_MAX: u32 = i32::MAX as u32;

/// Accepts TCP connections on a std [`TcpListener`].
///
/// # The listen backlog
///
/// Connections that have finished their handshake wait in the kernel's
/// queue until they are accepted; the listen backlog bounds that queue.
/// When a burst of clients connects at once and the queue is full, the
/// kernel drops their packets: a client then waits for seconds of
/// retransmissions, or, when its final handshake packet was the one
/// dropped, believes it is connected and waits for a first line that never
/// comes. std's [`TcpListener::bind`] asks for a backlog of 128, which a
/// burst of a few hundred clients overflows; [`TcpTransport::bind`] asks for
/// the system's maximum instead (4096 on current Linux), and
/// [`TcpTransport::bind_with_backlog`] for the backlog you choose.
///
/// The backlog is the transport's setting, not
/// [`ServerConfig`](crate::ServerConfig)'s: the kernel takes it when the
/// socket starts listening, which is when the transport is bound, before any
/// server exists (and other transports have no backlog at all).
#[derive(Debug)]
pub struct TcpTransport {
    listener: TcpListener,
    local_addr: SocketAddr,
    backlog: Option<u32>,
}

impl TcpTransport {
    /// Binds a listener with the largest backlog the system allows (port 0
    /// picks a free port; see [`TcpTransport::local_addr`]).
    ///
    /// Like std's [`TcpListener::bind`], it tries each address `addr`
    /// resolves to until one binds, and sets `SO_REUSEADDR` on Unix (so that
    /// a restarted server can bind its port while connections of the last
    /// one are in `TIME_WAIT`).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with_backlog(addr, LISTEN_MAX)
    }

    /// Binds a listener whose queue of connections waiting to be accepted
    /// holds `backlog` at most. The kernel caps it at the system's maximum
    /// (on Linux `net.core.somaxconn`, on BSD and macOS
    /// `kern.ipc.somaxconn`); any value above that, `u32::MAX` included,
    /// means the maximum.
    pub fn bind_with_backlog(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<Self> {
        let asked = backlog.min(LISTEN_MAX);
        let mut last_error = None;
        for addr in addr.to_socket_addrs()? {
            match listen(addr, asked) {
                Ok(listener) => {
                    let mut transport = Self::from_listener(listener)?;
                    transport.backlog = match system_max_backlog() {
                        Some(max) => Some(asked.min(max)),
                        None if asked == LISTEN_MAX => None,
                        None => Some(asked),
                    };
                    return Ok(transport);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    }

    /// Wraps a listener that is already bound and listening (with the
    /// backlog it was given; std's [`TcpListener::bind`] gives 128).
    pub fn from_listener(listener: TcpListener) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        Ok(TcpTransport {
            listener,
            local_addr,
            backlog: None,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listen backlog in force, where the crate knows it: on Linux, the
    /// backlog asked for capped at `net.core.somaxconn` (read at bind).
    /// Elsewhere, the backlog asked for, which the kernel may cap further
    /// (BSD and macOS: at `kern.ipc.somaxconn`), and `None` when the system's
    /// maximum was asked for. `None` as well for a listener given to
    /// [`TcpTransport::from_listener`].
    pub fn backlog(&self) -> Option<u32> {
        self.backlog
    }

    /// A non-blocking handle on the listener, for a driver that polls it
    /// (the event loops). It shares the listener's open file description,
    /// so the listener itself turns non-blocking too: only a driver that
    /// owns the transport, and no longer calls [`Transport::accept`], may
    /// take it.
    pub(crate) fn poll_listener(&self) -> io::Result<mio::net::TcpListener> {
        let listener = self.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        Ok(mio::net::TcpListener::from_std(listener))
    }
}

/// Accepts one connection from a non-blocking listener (`WouldBlock` when
/// none is pending), set up like [`TcpTransport::accept`]'s.
pub(crate) fn accept_nonblocking(
    listener: &mio::net::TcpListener,
) -> io::Result<(mio::net::TcpStream, SocketAddr)> {
    accept_set_up(|| listener.accept(), |stream| stream.set_nodelay(true))
}

/// Binds a listening socket on `addr` with `backlog`.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: on Windows the option would let another socket steal
    // the port, so it is left alone there.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The system's cap on a listen backlog, where the crate can read it.
fn system_max_backlog() -> Option<u32> {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
        text.trim().parse().ok()
    } else {
        None
    }
}

/// Accepts until a connection is set up. A connection whose setup fails (a
/// peer that reset before it was accepted, say: macOS then fails
/// `TCP_NODELAY` with `EINVAL`) is logged and dropped: that is its own
/// error, not the listener's, and the next connection is accepted.
fn accept_set_up<S>(
    mut accept: impl FnMut() -> io::Result<(S, SocketAddr)>,
    set_up: impl Fn(&S) -> io::Result<()>,
) -> io::Result<(S, SocketAddr)> {
    loop {
        let (stream, peer) = accept()?;
        match set_up(&stream) {
            Ok(()) => return Ok((stream, peer)),
            Err(error) => log::debug!("dropped {peer}: setting up the connection failed: {error}"),
        }
    }
}

impl Transport for TcpTransport {
    type Connection = TcpConnection;

    fn accept(&self) -> io::Result<TcpConnection> {
        // Chat lines are small and latency matters more than packet count;
        // the writer already coalesces what is queued into one write.
        let (stream, peer) =
            accept_set_up(|| self.listener.accept(), |stream| stream.set_nodelay(true))?;
        Ok(TcpConnection { stream, peer })
    }

    /// Connects to the listener itself, so that a blocked `accept` (or a
    /// poll of the listener) returns.
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

    /// Resets the connection once closed (`SO_LINGER` 0): its unsent bytes
    /// are dropped rather than left to the kernel, which would otherwise
    /// keep them, for a client that does not read, long after the socket is
    /// closed. Shuts the reading side, so that a reader blocked on it lets
    /// go of the connection; not the writing side, which would queue a FIN
    /// after the unsent bytes and end the stream cleanly.
    fn abort(&self) -> io::Result<()> {
        reset_on_close(self)?;
        TcpStream::shutdown(self, Shutdown::Read)
    }
}

/// Makes closing `socket` reset the connection and drop its unsent bytes.
pub(crate) fn reset_on_close<S>(socket: &S) -> io::Result<()>
where
    for<'s> socket2::SockRef<'s>: From<&'s S>,
{
    socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::net::Ipv4Addr;

    fn peer(port: u16) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, port).into()
    }

    /// A connection whose setup fails (as `TCP_NODELAY` does with `EINVAL`
    /// on macOS when the peer has already reset) is dropped, and accept
    /// returns the next connection instead of failing.
    #[test]
    fn a_failed_setup_drops_that_connection_and_accepts_the_next() {
        let mut pending: VecDeque<io::Result<(u16, SocketAddr)>> =
            [Ok((1, peer(1001))), Ok((2, peer(1002)))].into();
        let accepted = accept_set_up(
            || {
                pending
                    .pop_front()
                    .expect("accepted past the last connection")
            },
            |&stream| match stream {
                1 => Err(io::Error::from_raw_os_error(22)),
                _ => Ok(()),
            },
        );
        let (stream, from) = accepted.expect("the second connection");
        assert_eq!((stream, from), (2, peer(1002)));
        assert!(pending.is_empty());
    }

    /// An error of accept itself is still the caller's to handle.
    #[test]
    fn an_accept_error_is_returned() {
        let setups = std::cell::Cell::new(0);
        let accepted = accept_set_up(
            || Err::<(u16, SocketAddr), _>(io::Error::from(io::ErrorKind::ConnectionAborted)),
            |_| {
                setups.set(setups.get() + 1);
                Ok(())
            },
        );
        assert_eq!(
            accepted.map(drop).unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
        assert_eq!(setups.get(), 0);
    }

    #[test]
    fn bind_reports_the_backlog_in_force() {
        let max = system_max_backlog();
        let transport = TcpTransport::bind("127.0.0.1:0").expect("bind");
        assert_eq!(transport.backlog(), max);
        let transport = TcpTransport::bind_with_backlog("127.0.0.1:0", 17).expect("bind");
        assert_eq!(transport.backlog(), Some(max.map_or(17, |max| max.min(17))));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let transport = TcpTransport::from_listener(listener).expect("wrap");
        assert_eq!(transport.backlog(), None);
    }

    /// A listener from `bind_with_backlog` accepts, and connections set up
    /// by `accept` have `TCP_NODELAY`.
    #[test]
    fn bound_listener_accepts_with_nodelay() {
        let transport = TcpTransport::bind_with_backlog("127.0.0.1:0", 8).expect("bind");
        let client = TcpStream::connect(transport.local_addr()).expect("connect");
        let connection = transport.accept().expect("accept");
        assert!(connection.stream().nodelay().expect("nodelay"));
        assert_eq!(
            connection.peer(),
            client.local_addr().expect("addr").to_string()
        );
    }

    #[test]
    fn bind_fails_on_an_address_in_use() {
        let first = TcpTransport::bind("127.0.0.1:0").expect("bind");
        let second = TcpTransport::bind(first.local_addr());
        assert_eq!(
            second.map(drop).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }
}
