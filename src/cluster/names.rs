//! The names the cluster uses on NATS: a room's name, a node's id, and the
//! key a member name is claimed under.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most characters a room name may have.
pub const MAX_ROOM_CHARS: usize = 32;

/// A room's name: 1 to [`MAX_ROOM_CHARS`] ASCII letters, digits, `-` or `_`.
///
/// It becomes part of NATS subjects, a stream name and key-value bucket
/// names, which is why it is ASCII only.
///
/// ```
/// use chatcore::cluster::RoomName;
///
/// assert_eq!("lobby".parse::<RoomName>().unwrap().as_str(), "lobby");
/// assert!("a.b".parse::<RoomName>().is_err());
/// assert!("".parse::<RoomName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

/// Why a room name is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomNameError {
    /// The name is empty.
    #[error("invalid room name: it is empty")]
    Empty,
    /// The name has more than [`MAX_ROOM_CHARS`] characters.
    #[error("invalid room name: it has more than {MAX_ROOM_CHARS} characters")]
    TooLong,
    /// The name holds a character other than an ASCII letter, a digit, `-`
    /// or `_`.
    #[error("invalid room name: only letters, digits, '-' and '_' are allowed")]
    BadCharacter,
}

impl RoomName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if name.len() > MAX_ROOM_CHARS {
            return Err(RoomNameError::TooLong);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RoomNameError::BadCharacter);
        }
        Ok(RoomName(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JetStream stream that carries the room's events.
    pub(crate) fn stream(&self) -> String {
        format!("CHATCORE_{}", self.0)
    }

    /// The prefix of every subject of the room's stream (no trailing dot).
    pub(crate) fn subject_prefix(&self) -> String {
        format!("chatcore.{}", self.0)
    }

    /// The key-value bucket of claimed member names.
    pub(crate) fn names_bucket(&self) -> String {
        format!("chatcore_{}_names", self.0)
    }

    /// The key-value bucket of node heartbeats.
    pub(crate) fn nodes_bucket(&self) -> String {
        format!("chatcore_{}_nodes", self.0)
    }
}

impl FromStr for RoomName {
    type Err = RoomNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomName::new(s)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node of a room: one [`RoomLink`](super::RoomLink), made fresh for
/// each link (16 lowercase hex digits), never reused.
///
/// A node id is safe in NATS subjects and key-value keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A new id, different from every other one (64 random bits from the
    /// standard library's per-process random hasher keys, the process id,
    /// the time and a counter).
    pub(crate) fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        hasher.write_u128(nanos);
        NodeId(format!("{:016x}", hasher.finish()).into())
    }

    /// Wraps an id read from the wire, if it is one this module could have
    /// made (1 to 64 ASCII letters or digits).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| NodeId(s.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key a member name is claimed under in the names bucket: `n` and the
/// hexadecimal of the UTF-8 of its Unicode lowercase form, so that names that
/// differ only in case share one key, and any name fits the restricted
/// character set of key-value keys.
pub(crate) fn name_key(name: &str) -> String {
    use fmt::Write as _;
    let lower = name.to_lowercase();
    let mut key = String::with_capacity(1 + 2 * lower.len());
    key.push('n');
    for b in lower.bytes() {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// The lowercase form names are compared on.
pub(crate) fn fold(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_name_rules() {
        assert!(RoomName::new("a").is_ok());
        assert!(RoomName::new("Lobby-2_x").is_ok());
        assert!(RoomName::new(&"x".repeat(32)).is_ok());
        assert_eq!(RoomName::new(""), Err(RoomNameError::Empty));
        assert_eq!(RoomName::new(&"x".repeat(33)), Err(RoomNameError::TooLong));
        for bad in ["a.b", "a b", "a*", "a>", "ñ", "a/b"] {
            assert_eq!(
                RoomName::new(bad),
                Err(RoomNameError::BadCharacter),
                "{bad}"
            );
        }
    }

    #[test]
    fn name_key_ignores_case_and_fits_key_charset() {
        assert_eq!(name_key("Ana"), name_key("aNA"));
        assert_eq!(name_key("Ñandú"), name_key("ñANDÚ"));
        assert_ne!(name_key("ana"), name_key("anna"));
        let key = name_key("priv\u{1F600}.*>");
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    }

    #[test]
    fn node_ids_differ_and_parse_back() {
        let a = NodeId::random();
        let b = NodeId::random();
        assert_ne!(a, b);
        assert_eq!(NodeId::parse(a.as_str()), Some(a));
        assert_eq!(NodeId::parse("a.b"), None);
        assert_eq!(NodeId::parse(""), None);
    }
}
