//! What the accept loops do when accepting fails: which failures belong to
//! one incoming connection, which mean the process is short of resources,
//! which mean the listener itself is broken; and how long to pause before
//! trying again.

use std::io;
use std::time::Duration;

use crate::error::ServerError;

/// The first pause after a failed accept.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// The longest pause: how often a server short of file descriptors tries
/// again, and how late, at worst, the threaded driver sees a shutdown then.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Whose failure a failed accept is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// One incoming connection's (aborted or reset before it was accepted,
    /// a network error pending on it, refused by a firewall), or a signal:
    /// the next accept may well succeed.
    Connection,
    /// The process or the system is out of file descriptors, buffers or
    /// memory: closing connections will free some.
    Resources,
    /// The listener itself is unusable (closed, not a socket, not
    /// listening): retrying cannot mend it.
    Listener,
    /// Anything else: worth a warning and another try.
    Unknown,
}

/// Classifies a failed accept: by the platform's own errno values on Unix
/// (they differ between Linux, BSD and macOS), by [`io::ErrorKind`]
/// elsewhere and for errors that carry no OS code (a custom transport's).
pub(crate) fn classify(error: &io::Error) -> Failure {
    #[cfg(unix)]
    if let Some(code) = error.raw_os_error() {
        return classify_errno(code);
    }
    classify_kind(error.kind())
}

/// The errno values accept(2) documents on Linux, BSD and macOS.
#[cfg(unix)]
fn classify_errno(code: i32) -> Failure {
    // Linux passes network errors pending on the new connection to accept,
    // and its manual says to treat them like EAGAIN: ENETDOWN, EPROTO,
    // ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH.
    // EPERM is a firewall's refusal of that connection.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if code == libc::ENONET {
        return Failure::Connection;
    }
    match code {
        libc::ECONNABORTED
        | libc::ECONNRESET
        | libc::EINTR
        | libc::EPROTO
        | libc::EPERM
        | libc::ETIMEDOUT
        | libc::ENETDOWN
        | libc::ENETUNREACH
        | libc::EHOSTDOWN
        | libc::EHOSTUNREACH
        | libc::ENOPROTOOPT
        | libc::EOPNOTSUPP => Failure::Connection,
        // EAGAIN and EWOULDBLOCK are one value on most systems: a guard
        // rather than two patterns.
        code if code == libc::EAGAIN || code == libc::EWOULDBLOCK => Failure::Connection,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Failure::Resources,
        libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT => Failure::Listener,
        _ => Failure::Unknown,
    }
}

/// Classifies by kind alone.
fn classify_kind(kind: io::ErrorKind) -> Failure {
    use io::ErrorKind::*;
    match kind {
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
        | PermissionDenied => Failure::Connection,
        OutOfMemory => Failure::Resources,
        NotConnected | InvalidInput | Unsupported => Failure::Listener,
        _ => Failure::Unknown,
    }
}

/// How long to pause after each failed accept: doubling from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`] while accepts keep failing, back to
/// the start after one succeeds. No failure makes the loop spin.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// The pause after the next failure; zero (meaning the minimum) after
    /// a success.
    next: Duration,
}

impl Backoff {
    /// An accept succeeded.
    pub(crate) fn reset(&mut self) {
        self.next = Duration::ZERO;
    }

    /// An accept failed: the pause before the next try.
    pub(crate) fn failed(&mut self) -> Duration {
        let pause = self.next.max(BACKOFF_MIN);
        self.next = pause.saturating_mul(2).min(BACKOFF_MAX);
        pause
    }
}

/// Logs a failed accept. Returns the pause before the next try, or, when
/// the listener itself is broken, the error that ends the server.
pub(crate) fn accept_failed(
    error: io::Error,
    backoff: &mut Backoff,
    open_connections: usize,
) -> Result<Duration, ServerError> {
    let failure = classify(&error);
    if failure == Failure::Listener {
        log::error!("the listener failed: {error}");
        return Err(ServerError::Accept(error));
    }
    let pause = backoff.failed();
    match failure {
        Failure::Resources => log::warn!(
            "accept failed ({error}) with {open_connections} connections open; \
             retrying in {pause:?}"
        ),
        Failure::Unknown => log::warn!("accept failed: {error}; retrying in {pause:?}"),
        _ => log::debug!("accept failed: {error}; retrying in {pause:?}"),
    }
    Ok(pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[cfg(unix)]
    #[test]
    fn one_connections_errors_are_retried() {
        for code in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EINTR,
            libc::EAGAIN,
            libc::EWOULDBLOCK,
            libc::EPROTO,
            libc::EPERM,
            libc::ENETDOWN,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
        ] {
            assert_eq!(classify(&os(code)), Failure::Connection, "{}", os(code));
        }
    }

    #[cfg(unix)]
    #[test]
    fn running_out_of_descriptors_or_memory_is_resources() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify(&os(code)), Failure::Resources, "{}", os(code));
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_broken_listener_is_fatal() {
        for code in [libc::EBADF, libc::ENOTSOCK, libc::EINVAL, libc::EFAULT] {
            assert_eq!(classify(&os(code)), Failure::Listener, "{}", os(code));
        }
    }

    #[cfg(unix)]
    #[test]
    fn unknown_errno_is_unknown() {
        assert_eq!(classify(&os(libc::EDOM)), Failure::Unknown);
    }

    #[test]
    fn errors_without_an_os_code_are_classified_by_kind() {
        let kind = |kind| classify(&io::Error::new(kind, "custom transport"));
        assert_eq!(kind(io::ErrorKind::ConnectionAborted), Failure::Connection);
        assert_eq!(kind(io::ErrorKind::Interrupted), Failure::Connection);
        assert_eq!(kind(io::ErrorKind::OutOfMemory), Failure::Resources);
        assert_eq!(kind(io::ErrorKind::NotConnected), Failure::Listener);
        assert_eq!(kind(io::ErrorKind::Other), Failure::Unknown);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..12).map(|_| backoff.failed()).collect();
        assert_eq!(pauses[0], BACKOFF_MIN);
        assert_eq!(pauses[1], BACKOFF_MIN * 2);
        assert_eq!(pauses[2], BACKOFF_MIN * 4);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.failed(), BACKOFF_MIN);
    }

    #[test]
    fn only_a_broken_listener_ends_the_accept_loop() {
        let mut backoff = Backoff::default();
        for error in [
            io::Error::from(io::ErrorKind::ConnectionAborted),
            io::Error::from(io::ErrorKind::OutOfMemory),
            io::Error::other("something new"),
        ] {
            let pause = accept_failed(error, &mut backoff, 0).expect("retried");
            assert!(pause >= BACKOFF_MIN);
        }
        let fatal = accept_failed(
            io::Error::from(io::ErrorKind::NotConnected),
            &mut backoff,
            0,
        );
        assert!(matches!(fatal, Err(ServerError::Accept(_))));
    }

    /// A transport whose accepts fail as scripted, then with "not
    /// connected" (a broken listener, for a transport without OS codes).
    struct Failing {
        script: parking_lot::Mutex<std::collections::VecDeque<io::Error>>,
    }

    impl crate::transport::Transport for Failing {
        type Connection = crate::transport::MemoryConnection;

        fn accept(&self) -> io::Result<Self::Connection> {
            Err(self
                .script
                .lock()
                .pop_front()
                .unwrap_or_else(|| io::ErrorKind::NotConnected.into()))
        }

        fn wake(&self) {}
    }

    /// Bug: an error the accept loop did not know ended `run` (and before
    /// that, the loop spun on it with no pause). Now every failure of one
    /// connection, of resources or of an unknown kind is retried, and only
    /// a broken listener ends `run`.
    #[test]
    fn run_retries_every_failure_but_a_broken_listener() {
        let mut script: std::collections::VecDeque<io::Error> = [
            io::ErrorKind::ConnectionAborted.into(),
            io::ErrorKind::OutOfMemory.into(),
            io::Error::other("something new"),
            io::ErrorKind::Interrupted.into(),
        ]
        .into();
        #[cfg(unix)]
        script.extend([
            os(libc::ECONNABORTED),
            os(libc::EMFILE),
            os(libc::ENOBUFS),
            os(libc::EPROTO),
            os(libc::EDOM),
        ]);
        let transport = Failing {
            script: parking_lot::Mutex::new(script),
        };
        let server = crate::Server::new(transport, crate::ServerConfig::default());
        let result = server.run();
        assert!(
            matches!(&result, Err(ServerError::Accept(e)) if e.kind() == io::ErrorKind::NotConnected),
            "{result:?}"
        );
    }
}
