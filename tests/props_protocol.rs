//! Property tests of the line protocol (docs/PROTOCOL.md, sections "Lines",
//! "Joining" and "After joining"), each against a small model written here:
//! the codec under any split of its input into reads, the command parser,
//! and the name rules.

use bytes::BytesMut;
use chatcore::protocol::{
    is_blank, name_key, validate_name, Command, Frame, LineCodec, NameError, Reply, MAX_NAME_CHARS,
};
use proptest::prelude::*;

/// Enough cases to find the edges, few enough to run in seconds in debug.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(400)
}

// The codec.

/// A frame that outlives the read buffer, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Line(String),
    TooLong,
    InvalidUtf8,
}

fn owned(frame: Frame<'_>) -> Owned {
    match frame {
        Frame::Line(text) => Owned::Line(text.to_owned()),
        Frame::TooLong => Owned::TooLong,
        Frame::InvalidUtf8 => Owned::InvalidUtf8,
        other => panic!("a frame this test does not know: {other:?}"),
    }
}

/// The frames the whole stream must give, read in one piece: every
/// `\n`-terminated line loses one `\r` before its `\n`, then is too long,
/// not UTF-8, or a line. An unfinished last line gives nothing, except that
/// one that can no longer end within the limit is reported at once (the
/// README: over-long lines are reported as soon as the limit is passed).
fn model_frames(stream: &[u8], max_line: usize) -> Vec<Owned> {
    let mut frames = Vec::new();
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let unfinished = pieces.pop().unwrap_or_default();
    for piece in pieces {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        frames.push(if line.len() > max_line {
            Owned::TooLong
        } else {
            match String::from_utf8(line.to_vec()) {
                Ok(text) => Owned::Line(text),
                Err(_) => Owned::InvalidUtf8,
            }
        });
    }
    // Still able to fit: at most `max_line` bytes, or one more if that one
    // is a `\r` that a `\n` may follow.
    let may_fit = unfinished.len() <= max_line
        || (unfinished.len() == max_line + 1 && unfinished.last() == Some(&b'\r'));
    if !may_fit {
        frames.push(Owned::TooLong);
    }
    frames
}

/// Feeds `stream` to a codec in reads of the sizes in `reads` (cycled; one
/// read of everything when empty), decoding after each read as a driver
/// does. Returns the frames and the most bytes left buffered after a read.
fn decode_in_reads(stream: &[u8], max_line: usize, reads: &[usize]) -> (Vec<Owned>, usize) {
    let mut codec = LineCodec::new(max_line);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut most_buffered = 0;
    let mut sizes = reads.iter().cycle();
    let mut rest = stream;
    while !rest.is_empty() {
        let size = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
        buf.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        while let Some(frame) = codec.decode(&buf) {
            frames.push(owned(frame));
        }
        codec.consume(&mut buf);
        most_buffered = most_buffered.max(buf.len());
    }
    (frames, most_buffered)
}

/// Byte streams rich in what framing cares about: `\n`, `\r`, spaces, bytes
/// of multi-byte UTF-8 (and their truncations), bytes that are never UTF-8.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => prop::sample::select(b"ab \tQ".to_vec()),
        3 => Just(b'\n'),
        2 => Just(b'\r'),
        1 => prop::sample::select(vec![0xc3_u8, 0xb1, 0xe2, 0x82, 0xac, 0xff, 0x80]),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..300)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn codec_one_read_matches_the_model(stream in stream(), max_line in 0_usize..12) {
        let (frames, _) = decode_in_reads(&stream, max_line, &[]);
        prop_assert_eq!(frames, model_frames(&stream, max_line));
    }

    #[test]
    fn codec_any_split_gives_the_frames_of_one_read(
        stream in stream(),
        max_line in 0_usize..12,
        reads in prop::collection::vec(1_usize..20, 1..40),
    ) {
        let (whole, _) = decode_in_reads(&stream, max_line, &[]);
        let (split, most_buffered) = decode_in_reads(&stream, max_line, &reads);
        prop_assert_eq!(&split, &whole);
        // An unfinished line is held only while it may still fit the limit.
        prop_assert!(
            most_buffered <= max_line + 1,
            "{} bytes buffered with max_line {}", most_buffered, max_line
        );
        for frame in &split {
            if let Owned::Line(text) = frame {
                prop_assert!(text.len() <= max_line);
                prop_assert!(!text.contains('\n'));
            }
        }
    }

    #[test]
    fn codec_byte_by_byte_gives_the_frames_of_one_read(
        stream in stream(),
        max_line in 0_usize..12,
    ) {
        let (whole, _) = decode_in_reads(&stream, max_line, &[]);
        let (split, _) = decode_in_reads(&stream, max_line, &[1]);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn codec_crlf_and_lf_end_lines_alike(
        lines in prop::collection::vec("[a-c \t\r]{0,6}[a-c \t]", 0..10),
        reads in prop::collection::vec(1_usize..8, 1..10),
    ) {
        // Lines that do not end in `\r`: one `\r` before the `\n` is dropped,
        // any other `\r` is kept.
        let lf: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let crlf: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let expected: Vec<Owned> = lines.iter().map(|l| Owned::Line(l.clone())).collect();
        prop_assert_eq!(decode_in_reads(lf.as_bytes(), 7, &reads).0, expected.clone());
        prop_assert_eq!(decode_in_reads(crlf.as_bytes(), 7, &reads).0, expected);
    }

    #[test]
    fn codec_lines_within_the_limit_pass_whole(
        lines in prop::collection::vec("\\PC{0,20}", 0..8),
        reads in prop::collection::vec(1_usize..64, 1..10),
    ) {
        // Text without `\n` or `\r`, with a limit that fits every line.
        let lines: Vec<String> =
            lines.into_iter().map(|l| l.replace(['\n', '\r'], "")).collect();
        let max_line = lines.iter().map(String::len).max().unwrap_or(0);
        let stream: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let expected: Vec<Owned> = lines.iter().map(|l| Owned::Line(l.clone())).collect();
        prop_assert_eq!(decode_in_reads(stream.as_bytes(), max_line, &reads).0, expected);
    }
}

// The command parser.

/// What a line asks for, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    Say(String),
    Whisper(String, String),
    WhisperUsage,
    List,
    Help,
    Quit,
}

fn cmd(command: Command<'_>) -> Cmd {
    match command {
        Command::Say(text) => Cmd::Say(text.to_owned()),
        Command::Whisper { target, text } => Cmd::Whisper(target.to_owned(), text.to_owned()),
        Command::WhisperUsage => Cmd::WhisperUsage,
        Command::List => Cmd::List,
        Command::Help => Cmd::Help,
        Command::Quit => Cmd::Quit,
        other => panic!("a command this test does not know: {other:?}"),
    }
}

fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// docs/PROTOCOL.md, "After joining", with the README's word rules: a line
/// is a command only when it is exactly `QUIT` or its first word (from byte
/// 0 up to a space or tab) is exactly `\w`, `\list` or `\help`; the target
/// and the text of `\w` are separated by spaces or tabs, and the text is the
/// rest of the line from its first other character.
fn model_command(line: &str) -> Cmd {
    if line == "QUIT" {
        return Cmd::Quit;
    }
    let (first, after) = line.split_once(is_separator).unwrap_or((line, ""));
    match first {
        "\\list" => Cmd::List,
        "\\help" => Cmd::Help,
        "\\w" => {
            let words = after.trim_start_matches(is_separator);
            match words.split_once(is_separator) {
                Some((target, text)) if !text.trim_start_matches(is_separator).is_empty() => {
                    let text = text.trim_start_matches(is_separator);
                    Cmd::Whisper(target.to_owned(), text.to_owned())
                }
                _ => Cmd::WhisperUsage,
            }
        }
        _ => Cmd::Say(line.to_owned()),
    }
}

/// Lines made of the pieces commands are made of, so that near misses
/// (`\W`, `\listing`, `QUIT `, ` \list`, `QUIT\r`) come up often.
fn command_like_line() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "\\w", "\\list", "\\help", "QUIT", "quit", "\\W", "\\o/", "\\", "w", "ing", " ", "\t",
        "  ", "bob", "Ana", "ñ", "\r", "\u{a0}", "\u{3000}", "!",
    ]);
    prop::collection::vec(piece, 0..7).prop_map(|pieces| pieces.concat())
}

fn any_line() -> impl Strategy<Value = String> {
    prop_oneof![command_like_line(), "\\PC{0,24}", any::<String>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_matches_the_model(line in any_line()) {
        prop_assert_eq!(cmd(Command::parse(&line)), model_command(&line));
    }

    #[test]
    fn parse_keeps_text_as_sent(line in any_line()) {
        match Command::parse(&line) {
            Command::Say(text) => prop_assert_eq!(text, line.as_str()),
            Command::Whisper { target, text } => {
                prop_assert!(line.starts_with("\\w"));
                prop_assert!(!target.is_empty() && !target.contains(is_separator));
                prop_assert!(!text.is_empty() && !text.starts_with(is_separator));
                // The text is the line's tail, trailing spaces included.
                prop_assert!(line.ends_with(text));
            }
            _ => {}
        }
    }

    #[test]
    fn parse_whisper_built_from_its_parts(
        gap1 in "[ \t]{1,3}",
        target in "[^ \t]{1,8}",
        gap2 in "[ \t]{1,3}",
        text in "[^ \t][^\n]{0,12}",
    ) {
        let line = format!("\\w{gap1}{target}{gap2}{text}");
        prop_assert_eq!(cmd(Command::parse(&line)), Cmd::Whisper(target, text));
    }

    #[test]
    fn parse_whisper_without_a_target_or_text_is_usage(
        gap1 in "[ \t]{1,3}",
        target in prop::option::of("[^ \t]{1,8}"),
        gap2 in "[ \t]{0,3}",
    ) {
        for line in [
            "\\w".to_owned(),
            format!("\\w{gap1}"),
            format!("\\w{gap1}{}{gap2}", target.unwrap_or_default()),
        ] {
            prop_assert_eq!(cmd(Command::parse(&line)), Cmd::WhisperUsage, "{:?}", line);
        }
    }

    #[test]
    fn parse_list_and_help_ignore_the_rest(gap in "[ \t]", rest in "\\PC{0,12}") {
        prop_assert_eq!(cmd(Command::parse("\\list")), Cmd::List);
        prop_assert_eq!(cmd(Command::parse(&format!("\\list{gap}{rest}"))), Cmd::List);
        prop_assert_eq!(cmd(Command::parse(&format!("\\help{gap}{rest}"))), Cmd::Help);
    }

    #[test]
    fn blank_means_only_spaces_and_tabs(line in any_line()) {
        prop_assert_eq!(is_blank(&line), line.chars().all(is_separator));
    }
}

// The name rules.

/// White space as Unicode defines it (the White_Space property), listed
/// here rather than asked of the standard library.
fn unicode_white_space(c: char) -> bool {
    matches!(c,
        '\u{9}'..='\u{d}' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// Control characters as Unicode defines them (general category Cc).
fn unicode_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn reserved(c: char) -> bool {
    matches!(c, ':' | '(' | ')' | ',')
}

/// docs/PROTOCOL.md, "Joining": 1 to 32 characters, none white space, a
/// control character or one of `:` `(` `)` `,`, and no leading `\`.
fn model_valid(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=32).contains(&chars)
        && !name.starts_with('\\')
        && !name
            .chars()
            .any(|c| unicode_white_space(c) || unicode_control(c) || reserved(c))
}

/// Whether the reason given for refusing a name is true of it.
fn reason_holds(name: &str, error: NameError) -> bool {
    match error {
        NameError::Empty => name.is_empty(),
        NameError::TooLong => name.chars().count() > MAX_NAME_CHARS,
        NameError::BadCharacter => name
            .chars()
            .any(|c| unicode_white_space(c) || unicode_control(c)),
        NameError::LeadingBackslash => name.starts_with('\\'),
        NameError::ReservedCharacter => name.chars().any(reserved),
        _ => false,
    }
}

/// Names near every rule: the forbidden characters, Unicode white space
/// and control characters, characters that look like them but are allowed
/// (zero-width space, fullwidth colon), multi-byte characters, and lengths
/// around 32.
fn name_like() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        8 => prop::sample::select(vec!['a', 'Z', '7', '_', 'ñ', 'Ñ', 'ú', 'ß', 'İ', 'Σ', '🦀']),
        2 => prop::sample::select(vec![':', '(', ')', ',', '\\']),
        2 => prop::sample::select(vec![
            ' ', '\t', '\u{a0}', '\u{85}', '\u{2003}', '\u{2028}', '\u{3000}', '\u{1680}',
        ]),
        1 => prop::sample::select(vec!['\0', '\u{1b}', '\u{7f}', '\u{9f}', '\r', '\n']),
        1 => prop::sample::select(vec!['\u{200b}', '\u{feff}', '\u{ff1a}', '\u{ff08}', ';']),
        1 => any::<char>(),
    ];
    let allowed = prop::sample::select(vec!['a', 'ñ', '🦀', '\u{200b}', '\u{ff1a}', '\\']);
    prop_oneof![
        prop::collection::vec(char.clone(), 0..6),
        prop::collection::vec(char, 28..36),
        prop::collection::vec(allowed, 30..35),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

/// Letters with a simple one-to-one case mapping, for case-flipping.
fn cased_name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', 'Q', 'ñ', 'Ñ', 'ú', 'É', 'ç', 'ö', 'ω', 'Д']),
        1..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn flip_case(name: &str, flips: &[bool]) -> String {
    name.chars()
        .zip(flips.iter().cycle())
        .map(|(c, &flip)| match (flip, c.is_lowercase()) {
            (false, _) => c.to_string(),
            (true, true) => c.to_uppercase().collect(),
            (true, false) => c.to_lowercase().collect(),
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validate_name_matches_the_model(name in prop_oneof![name_like(), any::<String>()]) {
        match validate_name(&name) {
            Ok(()) => prop_assert!(model_valid(&name), "accepted {:?}", name),
            Err(error) => {
                prop_assert!(!model_valid(&name), "refused {:?}: {}", name, error);
                prop_assert!(reason_holds(&name, error), "{:?}: {:?}", name, error);
            }
        }
    }

    #[test]
    fn name_key_ignores_case(name in cased_name(), flips in prop::collection::vec(any::<bool>(), 1..12)) {
        let other = flip_case(&name, &flips);
        prop_assert_eq!(name_key(&name), name_key(&other));
        prop_assert_eq!(name_key(&name), name_key(&name.to_uppercase()));
    }

    #[test]
    fn name_keys_of_ascii_names_agree_with_ignoring_ascii_case(
        a in "[abAB]{1,3}",
        b in "[abAB]{1,3}",
    ) {
        prop_assert_eq!(name_key(&a) == name_key(&b), a.eq_ignore_ascii_case(&b));
    }

    /// A valid name cannot make a line read as another member's: the speaker
    /// of a public line is everything before its first `:`, a whisper's
    /// sender is between `priv(` and the first `)`, a join notice's name is
    /// its first word, and `\list` splits back into its names.
    #[test]
    fn valid_names_cannot_pass_for_another_line(
        names in prop::collection::vec(name_like(), 1..4),
        text in "\\PC{0,16}",
    ) {
        let names: Vec<&str> =
            names.iter().map(String::as_str).filter(|n| validate_name(n).is_ok()).collect();
        for &name in &names {
            let public = Reply::Public { from: name, text: &text }.encode();
            let public = std::str::from_utf8(&public).expect("replies are UTF-8");
            prop_assert_eq!(public.split_once(':').map(|(who, _)| who), Some(name));
            prop_assert!(!public.starts_with("priv("));

            let private = Reply::Private { from: name, text: &text }.encode();
            let private = std::str::from_utf8(&private).expect("replies are UTF-8");
            let sender = private.strip_prefix("priv(").and_then(|rest| rest.split_once(')'));
            prop_assert_eq!(sender.map(|(who, _)| who), Some(name));

            let joined = Reply::Joined(name).encode();
            let joined = std::str::from_utf8(&joined).expect("replies are UTF-8");
            prop_assert_eq!(joined.split_once(' ').map(|(who, _)| who), Some(name));
            prop_assert!(!joined.contains(':'));
        }
        let list = Reply::UserList(&names).encode();
        let list = std::str::from_utf8(&list).expect("replies are UTF-8");
        let listed = list.trim_end_matches('\n').split_once("): ").map(|(_, rest)| rest);
        let listed: Vec<&str> = match listed {
            Some("") | None => Vec::new(),
            Some(rest) => rest.split(", ").collect(),
        };
        prop_assert_eq!(listed, names);
    }
}
