//! RFC 6455 frames, server side: client frame headers in, server frame
//! headers out, unmasking, and UTF-8 checked across frame boundaries.

use bytes::{BufMut, BytesMut};

/// A continuation frame.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// A text frame.
pub(crate) const OP_TEXT: u8 = 0x1;
/// A binary frame.
pub(crate) const OP_BINARY: u8 = 0x2;
/// A close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// A ping frame.
pub(crate) const OP_PING: u8 = 0x9;
/// A pong frame.
pub(crate) const OP_PONG: u8 = 0xA;

/// The most payload a control frame may carry.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame header that breaks RFC 6455: the close code to fail with, and
/// why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// Close code 1002: the peer broke the protocol.
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
/// Close code 1003: a kind of data the endpoint does not accept.
pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
/// Close code 1007: a text message that is not UTF-8.
pub(crate) const INVALID_PAYLOAD: u16 = 1007;

const fn violation(reason: &'static str) -> Violation {
    Violation {
        code: PROTOCOL_ERROR,
        reason,
    }
}

/// The header of a frame from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: [u8; 4],
    pub(crate) len: u64,
}

impl Header {
    /// Whether this is a control frame (close, ping, pong).
    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads a client frame header from the start of `bytes`: `Ok(None)` means
/// more bytes are needed; otherwise the header and its length in bytes.
/// Everything RFC 6455 lets a server check in a header is checked here, as
/// soon as the bytes that show it have arrived.
pub(crate) fn parse_client_header(bytes: &[u8]) -> Result<Option<(Header, usize)>, Violation> {
    let [b0, b1, ..] = *bytes else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 {
        return Err(violation("reserved bits set with no extension"));
    }
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(violation("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(violation("client frames must be masked"));
    }
    let len7 = b1 & 0x7F;
    if opcode & 0x8 != 0 {
        if !fin {
            return Err(violation("fragmented control frame"));
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(violation("control frame payload over 125 bytes"));
        }
    }
    let (len, at) = match len7 {
        126 => match bytes.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(raw) => {
                let mut be = [0; 8];
                be.copy_from_slice(raw);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(violation("payload length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    let Some(&[m0, m1, m2, m3]) = bytes.get(at..at + 4) else {
        return Ok(None);
    };
    let header = Header {
        fin,
        opcode,
        mask: [m0, m1, m2, m3],
        len,
    };
    Ok(Some((header, at + 4)))
}

/// Appends an unmasked (server) frame: its header, then `payload`.
pub(crate) fn put_frame(out: &mut BytesMut, fin: bool, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 10);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode);
    if len <= 125 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.extend_from_slice(payload);
}

/// Unmasks `payload` in place; `offset` is how many bytes of the frame's
/// payload came before it.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4], offset: u64) {
    let mut key = mask;
    key.rotate_left((offset % 4) as usize);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Checks that a message is UTF-8 as its bytes arrive in pieces: a
/// character split across two frames (or two reads) is held, at most three
/// bytes of it, until the rest comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Utf8Check {
    held: [u8; 4],
    len: u8,
}

impl Utf8Check {
    /// Checks the next piece. On error, returns how many bytes of `bytes`
    /// are valid before the first invalid one.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), usize> {
        let mut valid_prefix = 0;
        if self.len > 0 {
            let need = char_len(self.held[0]);
            while usize::from(self.len) < need {
                let Some((&b, rest)) = bytes.split_first() else {
                    break;
                };
                self.held[usize::from(self.len)] = b;
                self.len += 1;
                bytes = rest;
                valid_prefix += 1;
            }
            let held = &self.held[..usize::from(self.len)];
            match std::str::from_utf8(held) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()), // still short
                Err(_) => return Err(0),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.held[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(e) => Err(valid_prefix + e.valid_up_to()),
        }
    }

    /// Whether the bytes so far end on a whole character.
    pub(crate) fn is_complete(&self) -> bool {
        self.len == 0
    }
}

/// How long the UTF-8 sequence that starts with `lead` is (a lead byte that
/// `from_utf8` called incomplete, so one of 2, 3 or 4).
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn header_parses_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = client_frame(true, OP_TEXT, &vec![b'a'; len], [1, 2, 3, 4]);
            let (header, at) = parse_client_header(&frame).unwrap().unwrap();
            assert_eq!(header.len, len as u64);
            assert_eq!(frame.len() - at, len);
            assert_eq!(header.mask, [1, 2, 3, 4]);
            assert!(header.fin);
            // Every proper prefix of the header asks for more.
            for cut in 0..at {
                assert_eq!(parse_client_header(&frame[..cut]), Ok(None), "{len} {cut}");
            }
        }
    }

    #[test]
    fn header_refuses_an_unmasked_frame_as_soon_as_it_shows() {
        let err = parse_client_header(&[0x81, 0x05]).unwrap_err();
        assert_eq!(err.code, PROTOCOL_ERROR);
        assert!(err.reason.contains("masked"));
    }

    #[test]
    fn header_refuses_reserved_bits_unknown_opcodes_and_bad_control_frames() {
        for bytes in [
            &[0xC1, 0x80][..],                        // RSV1
            &[0x83, 0x80],                            // opcode 3
            &[0x8B, 0x80],                            // opcode 0xB
            &[0x09, 0x80],                            // ping without FIN
            &[0x89, 0xFE],                            // ping with 126-byte length
            &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], // top bit of 64-bit length
        ] {
            assert_eq!(
                parse_client_header(bytes).map_err(|v| v.code),
                Err(PROTOCOL_ERROR),
                "{bytes:x?}"
            );
        }
    }

    #[test]
    fn put_frame_uses_the_shortest_length_form() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = BytesMut::new();
            put_frame(&mut out, true, OP_TEXT, &vec![b'x'; len]);
            assert_eq!(out.len(), header_len + len, "{len}");
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
        }
    }

    #[test]
    fn unmask_from_any_offset_matches_bytewise() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..40u8).collect();
        let masked: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        for split in 0..masked.len() {
            let mut bytes = masked.clone();
            let (a, b) = bytes.split_at_mut(split);
            unmask(a, mask, 0);
            unmask(b, mask, split as u64);
            assert_eq!(bytes, data, "split at {split}");
        }
    }

    #[test]
    fn utf8_check_accepts_characters_split_anywhere() {
        let text = "añ€😀z".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut check = Utf8Check::default();
                assert_eq!(check.feed(&text[..a]), Ok(()));
                assert_eq!(check.feed(&text[a..b]), Ok(()));
                assert_eq!(check.feed(&text[b..]), Ok(()));
                assert!(check.is_complete(), "{a} {b}");
            }
        }
    }

    #[test]
    fn utf8_check_reports_where_invalid_bytes_start() {
        let mut check = Utf8Check::default();
        assert_eq!(check.feed(b"ok\n\xff"), Err(3));
        let mut check = Utf8Check::default();
        assert_eq!(check.feed(b"ab\xe2\x82"), Ok(()));
        assert!(!check.is_complete());
        assert_eq!(check.feed(b"x"), Err(0), "a broken split character");
        let mut check = Utf8Check::default();
        assert_eq!(check.feed(b"\xed\xa0\x80"), Err(0), "a surrogate");
    }
}
