//! A fixed read buffer that yields complete `\n`-terminated lines.

use memchr::memchr;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read but not yet consumed live in `buf[start..end]`.
pub struct LineBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl LineBuf {
    pub fn new(capacity: usize) -> Self {
        LineBuf {
            buf: vec![0u8; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads once more from `r`, after moving any partial line to the front.
    /// Returns the number of bytes read (0 at end of stream).
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "line longer than the read buffer",
            ));
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete line, without its `\n`.
    #[inline]
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..self.end];
        let nl = memchr(b'\n', pending)?;
        let line = &self.buf[self.start..self.start + nl];
        self.start += nl + 1;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_across_reads() {
        let mut lb = LineBuf::new(16);
        let mut input: &[u8] = b"ab\ncd";
        lb.fill(&mut input).await.expect("read");
        assert_eq!(lb.next_line(), Some(&b"ab"[..]));
        assert_eq!(lb.next_line(), None);
        let mut more: &[u8] = b"e\n";
        lb.fill(&mut more).await.expect("read");
        assert_eq!(lb.next_line(), Some(&b"cde"[..]));
        assert_eq!(lb.next_line(), None);
    }
}
