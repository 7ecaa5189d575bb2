//! Member names: what makes one valid, and when two are the same.

/// The most characters (Unicode scalar values) a name may have.
pub const MAX_NAME_CHARS: usize = 32;

/// The characters a name may not hold because a name with one of them could
/// pass for another member's line: `priv(ana)` saying `hi` would read as a
/// whisper from `ana`, `ana:` joining as `ana` speaking, and a `,` would
/// break the `\list` line.
pub const RESERVED_NAME_CHARS: [char; 4] = [':', '(', ')', ','];

/// Why a name is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("invalid name: it is empty")]
    Empty,
    /// The name has more than [`MAX_NAME_CHARS`] characters.
    #[error("invalid name: it has more than {MAX_NAME_CHARS} characters")]
    TooLong,
    /// The name holds white space or a control character.
    #[error("invalid name: it contains white space or a control character")]
    BadCharacter,
    /// The name starts with `\`, which commands start with.
    #[error("invalid name: it starts with '\\'")]
    LeadingBackslash,
    /// The name holds one of [`RESERVED_NAME_CHARS`] (`:` `(` `)` `,`).
    #[error("invalid name: it contains one of : ( ) ,")]
    ReservedCharacter,
}

/// Checks a name against the protocol's rules (version 1.1): 1 to 32
/// characters, none of them white space or a control character (as Unicode
/// defines them) or one of `:` `(` `)` `,`, and no leading `\`.
///
/// ```
/// use chatcore::protocol::{validate_name, NameError};
///
/// assert_eq!(validate_name("Ñandú"), Ok(()));
/// assert_eq!(validate_name("a b"), Err(NameError::BadCharacter));
/// assert_eq!(validate_name("a\u{a0}b"), Err(NameError::BadCharacter));
/// assert_eq!(validate_name(r"\w"), Err(NameError::LeadingBackslash));
/// assert_eq!(validate_name("priv(ana)"), Err(NameError::ReservedCharacter));
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.starts_with('\\') {
        return Err(NameError::LeadingBackslash);
    }
    let mut count = 0;
    for c in name.chars() {
        count += 1;
        if count > MAX_NAME_CHARS {
            return Err(NameError::TooLong);
        }
        if c.is_whitespace() || c.is_control() {
            return Err(NameError::BadCharacter);
        }
        if RESERVED_NAME_CHARS.contains(&c) {
            return Err(NameError::ReservedCharacter);
        }
    }
    Ok(())
}

/// The key that makes names unique without regard to case: the name's
/// Unicode lowercase form (`Ana` and `ana`, `Ñandú` and `ñANDÚ` share one).
///
/// ```
/// use chatcore::protocol::name_key;
///
/// assert_eq!(name_key("Ñandú"), name_key("ñANDÚ"));
/// ```
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"ñ".repeat(32)), Ok(()));
        assert_eq!(validate_name(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate_name("x"), Ok(()));
    }

    #[test]
    fn white_space_and_control_characters_are_refused() {
        for name in [
            "a b",
            "a\tb",
            "\u{a0}",
            "a\u{2003}",
            "nul\0",
            "esc\u{1b}",
            "del\u{7f}",
            "cr\r",
        ] {
            assert_eq!(
                validate_name(name),
                Err(NameError::BadCharacter),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_backslash_is_refused_only_at_the_start() {
        assert_eq!(validate_name(r"\o/"), Err(NameError::LeadingBackslash));
        assert_eq!(validate_name(r"o\o"), Ok(()));
    }

    #[test]
    fn names_that_could_pass_for_another_line_are_refused() {
        for name in [
            "priv(ana)",
            "ana:",
            "a,b",
            ":",
            "(",
            ")",
            ",",
            "ana)",
            "(ana",
            "Ñandú,",
        ] {
            assert_eq!(
                validate_name(name),
                Err(NameError::ReservedCharacter),
                "{name:?}"
            );
        }
        // Look-alikes of the reserved characters are ordinary characters.
        for name in ["ana;", "ana[x]", "ana\u{ff1a}", "priv{ana}", "a.b"] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn keys_fold_case() {
        assert_eq!(name_key("Ana"), name_key("aNA"));
        assert_ne!(name_key("Ana"), name_key("Anna"));
    }
}
