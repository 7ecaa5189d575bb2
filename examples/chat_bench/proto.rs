//! The two wire protocols as far as the generator needs them: the payload
//! stamp, the lines a sender writes, and what a received line means.

use crate::args::Proto;

/// First byte of every benchmark payload.
const MARK: u8 = b'~';
/// The tail of a chat join announcement.
const JOINED: &[u8] = b" has joined the chat.";
/// The tail of a chat leave notice.
const LEFT: &[u8] = b" has left the chat.";

/// What a payload carries: who sent it, its sequence number (from 1) and
/// when it was written, in nanoseconds since the run's shared clock origin.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// What one received line means to the generator.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A benchmark payload.
    Data(Stamp),
    /// A chat join announcement.
    Join,
    /// A chat leave notice (members leaving as the run stops send these).
    Leave,
    /// NATS keep-alive that must be answered with `PONG`.
    Ping,
    /// NATS `PONG`.
    Pong,
    /// Protocol framing with no meaning here (NATS `MSG` headers, `+OK`).
    Frame,
    /// Anything else (error lines, leave notices, ...).
    Other,
}

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends a payload `~<sender>:<seq>:<nanos>:` padded with `x` to `size` bytes.
pub fn push_payload(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    out.push(MARK);
    push_u64(out, u64::from(stamp.sender));
    out.push(b':');
    push_u64(out, stamp.seq);
    out.push(b':');
    push_u64(out, stamp.sent_ns);
    out.push(b':');
    let len = out.len() - start;
    if len < size {
        out.resize(start + size, b'x');
    }
}

/// Parses 1 to 19 decimal digits ended by `:` (19 digits cannot overflow a
/// u64); returns the number and the rest after the `:`.
#[inline]
fn parse_field(p: &[u8]) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < p.len() && i < 19 {
        let d = p[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    // A 20th digit is left in place and fails the `:` check.
    if i == 0 || p.get(i) != Some(&b':') {
        return None;
    }
    Some((v, &p[i + 1..]))
}

/// Parses a payload written by [`push_payload`].
pub fn parse_payload(p: &[u8]) -> Option<Stamp> {
    let p = p.strip_prefix(&[MARK])?;
    let (sender, p) = parse_field(p)?;
    let (seq, p) = parse_field(p)?;
    let (sent_ns, _) = parse_field(p)?;
    Some(Stamp {
        sender: u32::try_from(sender).ok()?,
        seq,
        sent_ns,
    })
}

/// Classifies one received line (without its `\n`).
pub fn classify(proto: Proto, line: &[u8]) -> Event {
    match proto {
        Proto::Chat => classify_chat(line),
        Proto::Nats => classify_nats(line),
    }
}

/// `<name>: ~...` (public) and `priv(<name>): ~...` (whisper) carry payloads;
/// member names never contain `:`, so the first `:` ends the name (it is
/// near the start, where a plain loop beats a vectorised search).
#[inline]
fn classify_chat(line: &[u8]) -> Event {
    if let Some(c) = line.iter().position(|&b| b == b':') {
        let rest = &line[c + 1..];
        if rest.len() > 1 && rest[0] == b' ' && rest[1] == MARK {
            return match parse_payload(&rest[1..]) {
                Some(s) => Event::Data(s),
                None => Event::Other,
            };
        }
    }
    if line.ends_with(JOINED) {
        Event::Join
    } else if line.ends_with(LEFT) {
        Event::Leave
    } else {
        Event::Other
    }
}

/// NATS lines end in `\r\n`; a `MSG` header line is followed by its payload line.
fn classify_nats(line: &[u8]) -> Event {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.first() {
        Some(&MARK) => match parse_payload(line) {
            Some(s) => Event::Data(s),
            None => Event::Other,
        },
        _ if line.starts_with(b"MSG ") || line == b"+OK" => Event::Frame,
        _ if line == b"PING" => Event::Ping,
        _ if line == b"PONG" => Event::Pong,
        _ => Event::Other,
    }
}

/// Encodes outgoing messages for one sender, reusing its buffers.
pub struct Encoder {
    proto: Proto,
    size: usize,
    name_prefix: String,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(proto: Proto, size: usize, name_prefix: &str) -> Self {
        Encoder {
            proto,
            size,
            name_prefix: name_prefix.to_owned(),
            scratch: Vec::with_capacity(size + 64),
        }
    }

    /// Appends one message: public when `target` is `None`, else a private
    /// message to member `target`.
    pub fn push(&mut self, out: &mut Vec<u8>, stamp: Stamp, target: Option<usize>) {
        match self.proto {
            Proto::Chat => {
                if let Some(t) = target {
                    out.extend_from_slice(b"\\w ");
                    out.extend_from_slice(self.name_prefix.as_bytes());
                    push_u64(out, t as u64);
                    out.push(b' ');
                }
                push_payload(out, stamp, self.size);
                out.push(b'\n');
            }
            Proto::Nats => {
                self.scratch.clear();
                push_payload(&mut self.scratch, stamp, self.size);
                match target {
                    Some(t) => {
                        out.extend_from_slice(b"PUB inbox.");
                        push_u64(out, t as u64);
                        out.push(b' ');
                    }
                    None => out.extend_from_slice(b"PUB room "),
                }
                push_u64(out, self.scratch.len() as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.scratch);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// The member's name on a chat server.
pub fn member_name(prefix: &str, idx: usize) -> String {
    format!("{prefix}{idx}")
}

/// The NATS subject a member subscribes to.
pub fn nats_subject(private: bool, idx: usize) -> String {
    if private {
        format!("inbox.{idx}")
    } else {
        "room".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_padding() {
        let s = Stamp {
            sender: 7,
            seq: 12345,
            sent_ns: 987654321,
        };
        let mut out = Vec::new();
        push_payload(&mut out, s, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(parse_payload(&out), Some(s));
        assert_eq!(parse_payload(b"~1:2:3"), None);
        assert_eq!(parse_payload(b"~1::3:"), None);
        assert_eq!(parse_payload(b"~1:99999999999999999999:3:"), None);
        let max = format!("~1:{}:3:", 9_999_999_999_999_999_999u64);
        assert!(parse_payload(max.as_bytes()).is_some());
        let mut short = Vec::new();
        push_payload(&mut short, s, 4);
        assert_eq!(short, b"~7:12345:987654321:");
    }

    #[test]
    fn classifies_chat_lines() {
        assert_eq!(
            classify(Proto::Chat, b"b3: ~3:1:5:xx"),
            Event::Data(Stamp {
                sender: 3,
                seq: 1,
                sent_ns: 5
            })
        );
        assert!(matches!(
            classify(Proto::Chat, b"priv(b3): ~3:2:5:"),
            Event::Data(_)
        ));
        assert_eq!(
            classify(Proto::Chat, b"b3 has joined the chat."),
            Event::Join
        );
        assert_eq!(
            classify(Proto::Chat, b"b3 has left the chat."),
            Event::Leave
        );
        assert_eq!(classify(Proto::Chat, b"b3: hello"), Event::Other);
        assert_eq!(classify(Proto::Chat, b"b3: ~x"), Event::Other);
    }

    #[test]
    fn classifies_nats_lines() {
        assert_eq!(classify(Proto::Nats, b"MSG room 1 20\r"), Event::Frame);
        assert!(matches!(
            classify(Proto::Nats, b"~1:2:3:\r"),
            Event::Data(_)
        ));
        assert_eq!(classify(Proto::Nats, b"PING\r"), Event::Ping);
    }
}
