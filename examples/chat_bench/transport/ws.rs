//! The WebSocket client side of chat_bench (RFC 6455): the upgrade, then a
//! streaming frame decoder that turns the server's text messages into
//! `\n`-terminated lines, and an encoder that sends each line as one masked
//! text frame.
//!
//! Why not tokio-tungstenite: every message it reads costs an allocation
//! and a round through its waker and lock machinery; measured on scenario
//! A, the loader spent about five times the CPU per delivered line of
//! plain TCP, enough to make the loader, not the server, the bottleneck on
//! two cores. This decoder copies payload bytes straight into the
//! caller's line buffer. The key and accept hash of the upgrade are
//! tungstenite's.

use super::{ByteReader, ByteWriter};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

/// The most bytes of the server's answer to the upgrade.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Asks for the upgrade to WebSocket on `path` and checks the answer.
/// Returns the reader, which keeps whatever followed the answer.
pub async fn upgrade(
    mut reader: ByteReader,
    writer: &mut ByteWriter,
    host: &str,
    path: &str,
    raw_capacity: usize,
) -> Result<WsReader, String> {
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    writer
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write the upgrade request: {e}"))?;
    // `raw_capacity` is the caller's choice; the whole head must fit.
    let mut raw = vec![0u8; raw_capacity.max(MAX_RESPONSE_HEAD)].into_boxed_slice();
    let mut end = 0;
    let head_len = loop {
        if let Some(i) = raw[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if end == MAX_RESPONSE_HEAD {
            return Err("the upgrade answer's head passes 8 KiB".into());
        }
        let n = reader
            .read(&mut raw[end..MAX_RESPONSE_HEAD])
            .await
            .map_err(|e| format!("read the upgrade answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection during the upgrade".into());
        }
        end += n;
    };
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("the upgrade was refused: {status}"));
    }
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.trim().to_owned());
    if accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err("the upgrade answer has a wrong Sec-WebSocket-Accept".into());
    }
    // Keep what came after the head: the server's first frames.
    raw.copy_within(head_len..end, 0);
    Ok(WsReader::with_buffer(reader, raw, end - head_len))
}

/// Where the decoder is in the server's frames.
#[derive(Clone, Copy)]
enum Frame {
    /// Before a frame header.
    Header,
    /// Inside a data frame's payload: `left` bytes to go; `fin` ends the
    /// message (and so the line).
    Payload { left: u64, fin: bool },
}

/// The server's frames read as lines: each text message is its payload
/// and a `\n`; the close frame is the end of the stream (its code is
/// kept); pings and pongs are skipped (the chat server sends none); a
/// binary message, a masked or reserved frame is an error.
pub struct WsReader<R = ByteReader> {
    inner: R,
    /// Bytes read but not decoded yet: `raw[start..end]`.
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    frame: Frame,
    pub close_code: Option<u16>,
    ended: bool,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// Reads the frames that follow the upgrade from `inner`, in a buffer of
    /// `capacity` bytes (at least 256: a header and a control frame).
    #[cfg(test)]
    pub fn new(inner: R, capacity: usize) -> Self {
        Self::with_buffer(inner, vec![0u8; capacity.max(256)].into_boxed_slice(), 0)
    }

    /// `raw[..filled]` holds frames already read.
    fn with_buffer(inner: R, raw: Box<[u8]>, filled: usize) -> Self {
        WsReader {
            inner,
            raw,
            start: 0,
            end: filled,
            frame: Frame::Header,
            close_code: None,
            ended: false,
        }
    }

    /// Fills `out` with decoded lines: at least one byte, or the end.
    fn poll_lines(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = out.filled().len();
        loop {
            self.decode(out)?;
            if out.filled().len() > before || self.ended || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if self.start > 0 {
                self.raw.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let mut free = ReadBuf::new(&mut self.raw[self.end..]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut free))?;
            let n = free.filled().len();
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended without a close frame",
                )));
            }
            self.end += n;
        }
    }

    /// Decodes what `raw` holds into `out`, as far as both allow.
    fn decode(&mut self, out: &mut ReadBuf<'_>) -> io::Result<()> {
        while !self.ended && out.remaining() > 0 {
            let raw = &self.raw[self.start..self.end];
            match self.frame {
                Frame::Payload { left: 0, fin } => {
                    if fin {
                        out.put_slice(b"\n");
                    }
                    self.frame = Frame::Header;
                }
                Frame::Payload { left, fin } => {
                    let n = (left.min(raw.len() as u64) as usize).min(out.remaining());
                    if n == 0 {
                        return Ok(());
                    }
                    out.put_slice(&raw[..n]);
                    self.start += n;
                    self.frame = Frame::Payload {
                        left: left - n as u64,
                        fin,
                    };
                }
                Frame::Header => {
                    let Some((header, len)) = parse_header(raw)? else {
                        return Ok(());
                    };
                    let fin = raw[0] & 0x80 != 0;
                    match raw[0] & 0x0f {
                        0x0 | 0x1 => {
                            self.start += header;
                            self.frame = Frame::Payload { left: len, fin };
                        }
                        opcode @ (0x8..=0xa) => {
                            let len = len as usize;
                            if raw.len() < header + len {
                                return Ok(()); // wait for the whole control frame
                            }
                            if opcode == 0x8 {
                                let payload = &raw[header..header + len];
                                self.close_code = Some(match payload {
                                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                                    _ => 1005,
                                });
                                self.ended = true;
                            }
                            self.start += header + len;
                        }
                        0x2 => return Err(invalid("the server sent a binary message")),
                        _ => return Err(invalid("a frame with an unknown opcode")),
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WsReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_lines(cx, out)
    }
}

/// A frame header's length and the payload's, or `None` until the whole
/// header has arrived.
fn parse_header(raw: &[u8]) -> io::Result<Option<(usize, u64)>> {
    let [first, second, ..] = *raw else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(invalid("a frame with reserved bits set"));
    }
    if second & 0x80 != 0 {
        return Err(invalid("a masked frame from the server"));
    }
    let control = first & 0x08 != 0;
    let (header, len) = match second & 0x7f {
        126 if !control => match raw.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 if !control => match raw.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
            None => return Ok(None),
        },
        126 | 127 => return Err(invalid("a control frame over 125 bytes")),
        len => (2, u64::from(len)),
    };
    Ok(Some((header, len)))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Sends lines as masked text frames (RFC 6455: a client masks every
/// frame).
pub struct WsWriter {
    pub inner: ByteWriter,
    frames: Vec<u8>,
    /// xorshift state for the masking keys.
    mask: u64,
}

impl WsWriter {
    pub fn new(inner: ByteWriter, seed: u64) -> Self {
        WsWriter {
            inner,
            frames: Vec::new(),
            mask: seed | 1,
        }
    }

    /// Sends each `\n`-terminated line of `lines` as one text message.
    pub async fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        self.frames.clear();
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            self.mask ^= self.mask << 13;
            self.mask ^= self.mask >> 7;
            self.mask ^= self.mask << 17;
            put_text_frame(&mut self.frames, line, (self.mask as u32).to_be_bytes());
        }
        let result = self.inner.write_all(&self.frames).await;
        if self.frames.capacity() > 64 * 1024 {
            self.frames = Vec::new();
        }
        result
    }
}

/// Appends one masked text frame holding `payload`.
pub fn put_text_frame(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
}
