//! Telling a connection it was refused (`Server is full.`, or `Server is
//! shutting down.` after shutdown), then closing it: on a thread of its
//! own when it can linger (or, for a connection with layers, do its
//! handshake), within a bound on how many do at once.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::transport::layer::CloseReason;
use crate::transport::{Connection, WriteHalf};

use super::layered::LayeredConnection;
use super::{linger, spawn, WRITE_TICK};

/// At most this many threads saying `Server is full.` at once; past it, the
/// line is written without lingering.
const MAX_REFUSERS: usize = 64;

static REFUSERS: AtomicUsize = AtomicUsize::new(0);

/// Tells a connection it was refused (`Server is full.`) and closes it.
pub(super) fn refuse<C: Connection>(
    connection: C,
    line: Bytes,
    reason: CloseReason,
    _: Option<Instant>,
) {
    let Ok((mut reader, mut writer)) = connection.split() else {
        return;
    };
    let say = move |writer: &mut C::Writer| {
        let _ = writer.set_write_timeout(Some(WRITE_TICK));
        let _ = writer.write_all(&line);
        let _ = writer.close(reason);
    };
    if REFUSERS.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSERS {
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
        say(&mut writer);
        return;
    }
    let spawned = spawn("chat-refuse", move || {
        say(&mut writer);
        linger(&mut reader, &mut [0; 512]);
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells a connection with layers it was refused, on a thread of its own:
/// when full, the line and the close wait for the handshake, up to
/// `deadline`; at shutdown, it is closed at once (as a connection still in
/// its handshake is at shutdown, on both drivers). Past
/// [`MAX_REFUSERS`] at once, the connection is closed untold (a handshake
/// must not run on the accept thread).
pub(super) fn refuse_layered(
    connection: LayeredConnection,
    line: Bytes,
    reason: CloseReason,
    deadline: Option<Instant>,
) {
    let peer = connection.peer();
    if REFUSERS.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSERS {
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
        log::debug!("dropped {peer} untold: too many refusals at once");
        return;
    }
    let spawned = spawn("chat-refuse", move || {
        if let Ok((mut reader, mut writer)) = connection.split() {
            let _ = writer.write_all(&line);
            let _ = writer.close(reason);
            if reader.await_established(deadline) {
                linger(&mut reader, &mut [0; 512]);
            } else {
                log::debug!("{peer}: refused before its handshake was done");
            }
        }
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        REFUSERS.fetch_sub(1, Ordering::SeqCst);
    }
}
