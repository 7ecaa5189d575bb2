//! Checks on what members of a room across servers heard: one order,
//! each sender's lines once and in order, nothing after a leave.
#![allow(dead_code)]

/// `<name>`'s leave notice.
pub fn left(name: &str) -> String {
    format!("{name} has left the chat.")
}

/// `<name>`'s join notice.
pub fn joined(name: &str) -> String {
    format!("{name} has joined the chat.")
}

/// The public lines `sender` says in the tests: `<sender> <i>`.
pub fn numbered(sender: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{sender} {i}")).collect()
}

/// Every member's sequence is the first one's.
pub fn assert_one_order(seqs: &[(&str, &[String])]) {
    let (first, want) = seqs[0];
    for (label, got) in &seqs[1..] {
        if *got != want {
            let at = got
                .iter()
                .zip(want.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{label} heard another sequence than {first} ({} and {} lines), first \
                 difference at {at}: {:?} against {:?}",
                got.len(),
                want.len(),
                got.get(at),
                want.get(at)
            );
        }
    }
}

/// The texts of `sender`'s public lines in `seq`, in order.
pub fn said_by<'a>(seq: &'a [String], sender: &str) -> Vec<&'a str> {
    let prefix = format!("{sender}: ");
    seq.iter().filter_map(|l| l.strip_prefix(&prefix)).collect()
}

/// `sender`'s lines in `seq` are exactly `want`, in order, each once.
pub fn assert_said(seq: &[String], sender: &str, want: &[String]) {
    let got = said_by(seq, sender);
    if got != want {
        let at = got
            .iter()
            .zip(want.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{sender}'s lines: {} heard, {} sent; first difference at {at}: {:?} against {:?}",
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

/// `sender`'s numbered lines in `seq` are `<sender> 0` to `<sender> <k-1>`,
/// in order, each once, and none comes after its leave notice (if any).
/// Returns `k`.
pub fn assert_numbered_prefix(seq: &[String], sender: &str) -> usize {
    let got = said_by(seq, sender);
    let k = got.len();
    assert_said(seq, sender, &numbered(sender, 0..k));
    if let Some(gone) = seq.iter().position(|l| *l == left(sender)) {
        let prefix = format!("{sender}: ");
        assert!(
            !seq[gone..].iter().any(|l| l.starts_with(&prefix)),
            "a line of {sender} after its leave notice"
        );
    }
    k
}

/// `part` is where `whole` begins.
pub fn assert_prefix(label: &str, part: &[String], whole: &[String]) {
    assert!(
        part.len() <= whole.len(),
        "{label}: {} lines heard, more than the {} of the room's order",
        part.len(),
        whole.len()
    );
    if let Some(at) = part.iter().zip(whole).position(|(a, b)| a != b) {
        panic!(
            "{label}: what it heard is not where the room's order begins: at {at}, {:?} \
             against {:?}",
            part[at], whole[at]
        );
    }
}

/// How many lines of `seq` equal `line`.
pub fn count(seq: &[String], line: &str) -> usize {
    seq.iter().filter(|l| *l == line).count()
}
