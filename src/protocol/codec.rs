//! Bytes to lines: the framing half of the line protocol.
//!
//! [`LineCodec`] finds `\n`-terminated lines in a [`BytesMut`] read buffer,
//! drops one `\r` right before the `\n`, enforces a hard maximum length and
//! checks that each line is UTF-8. It does no I/O: a driver appends whatever
//! it read to the buffer and calls [`LineCodec::decode`] until it returns
//! `None` ("need more bytes").

use bytes::{Buf, BytesMut};

/// The default maximum length of a client line, in bytes, without its `\n`.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// One unit decoded from a client's byte stream, borrowed from the read
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// A complete line: valid UTF-8, without its `\n` (nor a `\r` right
    /// before it), at most the codec's maximum length.
    Line(&'a str),
    /// A line longer than the maximum was seen. It is reported once, as soon
    /// as it is detected, and then discarded up to its `\n`.
    TooLong,
    /// A complete line that is not valid UTF-8; it has been discarded.
    InvalidUtf8,
}

/// Frames a byte stream into lines with a hard maximum length.
///
/// Decoding is two steps, so that lines are handed out without copying:
/// [`LineCodec::decode`] returns frames that borrow from the read buffer,
/// each call going on from where the last one stopped; when it returns
/// `None` ("need more bytes"), [`LineCodec::consume`] drops the decoded bytes
/// from the buffer. Append what the next read brings, and repeat.
///
/// After [`LineCodec::consume`], the buffer holds at most `max_line + 1`
/// bytes of an unfinished line (the limit, plus a `\r` that a `\n` may
/// follow): once a line is known to be too long, the codec reports
/// [`Frame::TooLong`] and consumes (discards) its bytes as they arrive until
/// the next `\n`.
///
/// ```
/// use bytes::BytesMut;
/// use chatcore::protocol::{Frame, LineCodec};
///
/// let mut codec = LineCodec::new(8);
/// let mut buf = BytesMut::from(&b"hi\r\nthis is too long\nok\npartial"[..]);
/// assert_eq!(codec.decode(&buf), Some(Frame::Line("hi")));
/// assert_eq!(codec.decode(&buf), Some(Frame::TooLong));
/// assert_eq!(codec.decode(&buf), Some(Frame::Line("ok")));
/// assert_eq!(codec.decode(&buf), None); // "partial" waits for its `\n`
/// codec.consume(&mut buf);
/// assert_eq!(&buf[..], b"partial");
/// ```
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_line: usize,
    /// Bytes at the start of the buffer already decoded (or discarded).
    consumed: usize,
    /// How far past `consumed` the buffer has been searched for `\n`.
    scanned: usize,
    /// Discarding the rest of an over-long line, up to its `\n`.
    discarding: bool,
}

impl LineCodec {
    /// A codec that accepts lines of at most `max_line` bytes (the `\n`, and
    /// a `\r` right before it, not counted).
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            consumed: 0,
            scanned: 0,
            discarding: false,
        }
    }

    /// The maximum line length this codec accepts.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Decodes the next frame from `buf`, going on from where the previous
    /// call stopped. Returns `None` when `buf` holds no further complete
    /// frame. `buf` must only grow at its end between calls, until
    /// [`LineCodec::consume`] is called.
    pub fn decode<'b>(&mut self, buf: &'b [u8]) -> Option<Frame<'b>> {
        loop {
            let start = self.consumed;
            let searched = start + self.scanned;
            match find_newline(buf.get(searched..).unwrap_or_default()) {
                Some(offset) => {
                    let end = searched + offset;
                    self.consumed = end + 1;
                    self.scanned = 0;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    return Some(self.frame(&buf[start..end]));
                }
                None if self.discarding => {
                    self.consumed = buf.len();
                    self.scanned = 0;
                    return None;
                }
                None => {
                    // The longest unfinished line that may still turn out valid
                    // is `max_line` bytes plus a `\r` that a `\n` may follow.
                    let len = buf.len().saturating_sub(start);
                    let too_long = len > self.max_line + 1
                        || (len == self.max_line + 1 && buf.last() != Some(&b'\r'));
                    if too_long {
                        self.discarding = true;
                        self.consumed = buf.len();
                        self.scanned = 0;
                        return Some(Frame::TooLong);
                    }
                    self.scanned = len;
                    return None;
                }
            }
        }
    }

    /// Drops the bytes decoded so far from the front of `buf`.
    pub fn consume(&mut self, buf: &mut BytesMut) {
        buf.advance(self.consumed.min(buf.len()));
        self.consumed = 0;
    }

    /// Turns the bytes of one complete line (without its `\n`) into a frame.
    fn frame<'b>(&self, line: &'b [u8]) -> Frame<'b> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            return Frame::TooLong;
        }
        match std::str::from_utf8(line) {
            Ok(text) => Frame::Line(text),
            Err(_) => Frame::InvalidUtf8,
        }
    }
}

impl Default for LineCodec {
    fn default() -> Self {
        LineCodec::new(DEFAULT_MAX_LINE)
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned frames, for comparing across reads.
    #[derive(Debug, PartialEq)]
    enum Owned {
        Line(String),
        TooLong,
        InvalidUtf8,
    }

    fn decode_all(codec: &mut LineCodec, buf: &mut BytesMut) -> Vec<Owned> {
        let frames = std::iter::from_fn(|| codec.decode(buf))
            .map(|frame| match frame {
                Frame::Line(text) => Owned::Line(text.to_owned()),
                Frame::TooLong => Owned::TooLong,
                Frame::InvalidUtf8 => Owned::InvalidUtf8,
            })
            .collect();
        codec.consume(buf);
        frames
    }

    fn line(text: &str) -> Owned {
        Owned::Line(text.to_owned())
    }

    #[test]
    fn decode_lines_and_keep_the_partial_tail() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::from(&b"one\ntwo\nthr"[..]);
        assert_eq!(decode_all(&mut codec, &mut buf), [line("one"), line("two")]);
        assert_eq!(&buf[..], b"thr");
        buf.extend_from_slice(b"ee\n");
        assert_eq!(decode_all(&mut codec, &mut buf), [line("three")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_strips_one_cr_before_lf_only() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::from(&b"a\r\nb\rc\nd\r\r\n\r\n"[..]);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [line("a"), line("b\rc"), line("d\r"), line("")]
        );
    }

    #[test]
    fn decode_underrun_byte_by_byte() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in b"hello\r\nworld\n" {
            buf.extend_from_slice(&[b]);
            frames.extend(decode_all(&mut codec, &mut buf));
        }
        assert_eq!(frames, [line("hello"), line("world")]);
    }

    #[test]
    fn decode_max_length_is_inclusive_and_cr_does_not_count() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcd\nabcd\r\nabcde\n"[..]);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [line("abcd"), line("abcd"), Owned::TooLong]
        );
    }

    #[test]
    fn decode_max_length_reports_once_and_discards_up_to_newline() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert_eq!(decode_all(&mut codec, &mut buf), [Owned::TooLong]);
        assert!(buf.is_empty(), "discarded bytes are not buffered");
        buf.extend_from_slice(b"ijklmnop");
        assert_eq!(decode_all(&mut codec, &mut buf), []);
        buf.extend_from_slice(b"qr\nok\n");
        assert_eq!(decode_all(&mut codec, &mut buf), [line("ok")]);
    }

    #[test]
    fn decode_max_length_waits_on_a_trailing_cr() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcd\r"[..]);
        assert_eq!(decode_all(&mut codec, &mut buf), []);
        buf.extend_from_slice(b"\n");
        assert_eq!(decode_all(&mut codec, &mut buf), [line("abcd")]);

        let mut buf = BytesMut::from(&b"abcd\rx"[..]);
        assert_eq!(decode_all(&mut codec, &mut buf), [Owned::TooLong]);
    }

    #[test]
    fn decode_max_length_bursts_between_good_lines() {
        let mut codec = LineCodec::new(3);
        let mut buf = BytesMut::from(&b"a\nlonglong\nb\nlonger\nc\n"[..]);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [
                line("a"),
                Owned::TooLong,
                line("b"),
                Owned::TooLong,
                line("c")
            ]
        );
    }

    #[test]
    fn decode_discard_repeat_across_many_reads() {
        let mut codec = LineCodec::new(2);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for _ in 0..100 {
            buf.extend_from_slice(b"xxxxxxxx");
            frames.extend(decode_all(&mut codec, &mut buf));
            assert!(buf.len() <= 3);
        }
        buf.extend_from_slice(b"\nhi\n");
        frames.extend(decode_all(&mut codec, &mut buf));
        assert_eq!(frames, [Owned::TooLong, line("hi")]);
    }

    #[test]
    fn decode_invalid_utf8_is_discarded_and_decoding_goes_on() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::from(&b"\xff\xfe\nok\n\xc3\n\xc3\xb1\n"[..]);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [
                Owned::InvalidUtf8,
                line("ok"),
                Owned::InvalidUtf8,
                line("ñ")
            ]
        );
    }

    #[test]
    fn decode_counts_bytes_not_characters() {
        let mut codec = LineCodec::new(3);
        let mut buf = BytesMut::from("ñn\nññ\n".as_bytes());
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [line("ñn"), Owned::TooLong]
        );
    }
}
