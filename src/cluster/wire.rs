//! The payload of one stream message: a [`Record`], in a small binary form.
//!
//! Every payload starts with a kind byte; then come fields, each a LEB128
//! integer or a LEB128 length and that many bytes. Text fields are UTF-8 and
//! may hold anything (the line protocol's framing is not assumed). Decoding
//! never panics: a malformed payload is a [`WireError`].

use bytes::{BufMut, Bytes, BytesMut};

use super::names::NodeId;

const JOIN: u8 = b'J';
const LEAVE: u8 = b'L';
const BATCH: u8 = b'B';

/// The kind byte of a [`Entry::Said`] in a batch.
const SAID: u8 = b'P';
/// The kind byte of a [`Entry::Whisper`] in a batch.
const WHISPER: u8 = b'W';

/// Why a member left, as carried by its leave record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveReason {
    /// It quit, its connection ended, or its node shut down.
    Left,
    /// Its node died (killed, or cut off from NATS); another node announced
    /// it.
    NodeDied,
}

/// One member's public lines inside a [`Record::Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Said {
    pub member: u64,
    pub name: String,
    pub lines: Vec<String>,
}

/// One member's whisper inside a [`Record::Batch`], to the member named
/// `target` (as the sender typed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Whisper {
    pub member: u64,
    pub name: String,
    pub target: String,
    pub text: String,
}

/// What a member of the batch's node said: public lines, or a whisper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Said(Said),
    Whisper(Whisper),
}

/// What one stream message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// A member joined (on `node`).
    Join {
        node: NodeId,
        member: u64,
        name: String,
    },
    /// A member left.
    Leave {
        node: NodeId,
        member: u64,
        name: String,
        reason: LeaveReason,
    },
    /// Public lines and whispers of one or more members of `node`, in the
    /// order they were accepted there.
    Batch { node: NodeId, entries: Vec<Entry> },
}

/// A payload that is not a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed room event: {0}")]
pub(crate) struct WireError(&'static str);

fn put_uint(buf: &mut BytesMut, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    put_uint(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

impl Record {
    /// The payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        match self {
            Record::Join { node, member, name } => {
                buf.put_u8(JOIN);
                put_str(&mut buf, node.as_str());
                put_uint(&mut buf, *member);
                put_str(&mut buf, name);
            }
            Record::Leave {
                node,
                member,
                name,
                reason,
            } => {
                buf.put_u8(LEAVE);
                put_str(&mut buf, node.as_str());
                put_uint(&mut buf, *member);
                put_str(&mut buf, name);
                buf.put_u8(match reason {
                    LeaveReason::Left => 0,
                    LeaveReason::NodeDied => 1,
                });
            }
            Record::Batch { node, entries } => {
                buf.reserve(entries.iter().map(entry_size).sum());
                buf.put_u8(BATCH);
                put_str(&mut buf, node.as_str());
                put_uint(&mut buf, entries.len() as u64);
                for entry in entries {
                    put_entry(&mut buf, entry);
                }
            }
        }
        buf.freeze()
    }

    /// Reads a payload back.
    pub fn decode(payload: &[u8]) -> Result<Record, WireError> {
        let mut r = Reader(payload);
        let kind = r.byte()?;
        let node = NodeId::parse(r.str()?).ok_or(WireError("bad node id"))?;
        let record = match kind {
            JOIN => Record::Join {
                node,
                member: r.uint()?,
                name: r.str()?.to_owned(),
            },
            LEAVE => Record::Leave {
                node,
                member: r.uint()?,
                name: r.str()?.to_owned(),
                reason: match r.byte()? {
                    0 => LeaveReason::Left,
                    1 => LeaveReason::NodeDied,
                    _ => return Err(WireError("bad leave reason")),
                },
            },
            BATCH => {
                let count = r.uint()?;
                // Each entry takes at least 4 bytes: never trust a count
                // for an allocation beyond what the payload can hold.
                let mut entries = Vec::with_capacity((count as usize).min(r.0.len() / 4));
                for _ in 0..count {
                    entries.push(r.entry()?);
                }
                Record::Batch { node, entries }
            }
            _ => return Err(WireError("unknown kind")),
        };
        if !r.0.is_empty() {
            return Err(WireError("trailing bytes"));
        }
        Ok(record)
    }
}

/// Appends one entry to a [`Record::Batch`] payload.
fn put_entry(buf: &mut BytesMut, entry: &Entry) {
    match entry {
        Entry::Said(s) => {
            buf.put_u8(SAID);
            put_uint(buf, s.member);
            put_str(buf, &s.name);
            put_uint(buf, s.lines.len() as u64);
            for line in &s.lines {
                put_str(buf, line);
            }
        }
        Entry::Whisper(w) => {
            buf.put_u8(WHISPER);
            put_uint(buf, w.member);
            put_str(buf, &w.name);
            put_str(buf, &w.target);
            put_str(buf, &w.text);
        }
    }
}

/// The size an [`Entry`] adds to a payload, near enough to bound a batch.
fn entry_size(entry: &Entry) -> usize {
    match entry {
        Entry::Said(s) => 13 + s.name.len() + s.lines.iter().map(|l| l.len() + 5).sum::<usize>(),
        Entry::Whisper(w) => 26 + w.name.len() + w.target.len() + w.text.len(),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.0.split_first().ok_or(WireError("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f)
                .checked_shl(shift)
                .ok_or(WireError("integer too large"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError("integer too large"))
    }

    fn entry(&mut self) -> Result<Entry, WireError> {
        Ok(match self.byte()? {
            SAID => {
                let member = self.uint()?;
                let name = self.str()?.to_owned();
                let n = self.uint()?;
                // Each line takes at least a byte (its length).
                let mut lines = Vec::with_capacity((n as usize).min(self.0.len()));
                for _ in 0..n {
                    lines.push(self.str()?.to_owned());
                }
                Entry::Said(Said {
                    member,
                    name,
                    lines,
                })
            }
            WHISPER => Entry::Whisper(Whisper {
                member: self.uint()?,
                name: self.str()?.to_owned(),
                target: self.str()?.to_owned(),
                text: self.str()?.to_owned(),
            }),
            _ => return Err(WireError("unknown entry kind")),
        })
    }

    fn str(&mut self) -> Result<&'a str, WireError> {
        let len = usize::try_from(self.uint()?).map_err(|_| WireError("length too large"))?;
        if len > self.0.len() {
            return Err(WireError("truncated"));
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|_| WireError("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node() -> NodeId {
        NodeId::parse("00ff00ff00ff00ff").unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let records = [
            Record::Join {
                node: node(),
                member: 7,
                name: "Ñandú".into(),
            },
            Record::Leave {
                node: node(),
                member: u64::MAX,
                name: "ana".into(),
                reason: LeaveReason::NodeDied,
            },
            Record::Batch {
                node: node(),
                entries: vec![
                    Entry::Said(Said {
                        member: 1,
                        name: "a".into(),
                        lines: vec!["x".into(), "".into(), "a\nb\r".into()],
                    }),
                    Entry::Whisper(Whisper {
                        member: 2,
                        name: "bob".into(),
                        target: "ANA".into(),
                        text: "psst".into(),
                    }),
                    Entry::Said(Said {
                        member: 300,
                        name: "b".into(),
                        lines: vec!["y".repeat(1000)],
                    }),
                ],
            },
            Record::Batch {
                node: node(),
                entries: Vec::new(),
            },
        ];
        for r in records {
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(b"X\x01a").is_err());
        assert!(Record::decode(b"J\x01a\x05").is_err()); // no name
        assert!(Record::decode(b"J\x01.\x05\x01a").is_err()); // bad node id
        assert!(Record::decode(b"J\x01a\x05\x01a!").is_err()); // trailing
        assert!(Record::decode(b"J\x01a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
        assert!(Record::decode(b"B\x01a\xff\xff\xff\xff\x0f").is_err()); // huge count
        assert!(Record::decode(b"B\x01a\x01X\x01\x01a\x00").is_err()); // unknown entry
        assert!(Record::decode(b"B\x01a\x01W\x01\x01a\x01b").is_err()); // no text
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn batches_round_trip(entries in proptest::collection::vec(
            (any::<u64>(), ".{0,8}", proptest::collection::vec(".{0,20}", 0..4), any::<bool>()), 0..6)) {
            let r = Record::Batch {
                node: node(),
                entries: entries
                    .into_iter()
                    .map(|(member, name, mut lines, whisper)| {
                        if whisper {
                            let text = lines.pop().unwrap_or_default();
                            let target = lines.pop().unwrap_or_default();
                            Entry::Whisper(Whisper { member, name, target, text })
                        } else {
                            Entry::Said(Said { member, name, lines })
                        }
                    })
                    .collect(),
            };
            prop_assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }
}
