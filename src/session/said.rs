//! Public lines read together, on their way to the room as one event.

/// Public lines read together, waiting to go to the room as one event.
pub(super) struct Said<'a> {
    pub(super) texts: Vec<&'a str>,
    /// The rendered size of the lines in `texts`.
    bytes: usize,
    /// The most rendered bytes of one event (unless a single line is more).
    max_bytes: usize,
    /// What rendering adds to each line's text.
    overhead: usize,
}

impl<'a> Said<'a> {
    /// At most this many bytes go to the room in one event, so that one
    /// sender's burst holds the room's lock only briefly.
    const MAX_BYTES: usize = 16 * 1024;

    /// A batch for an outbox holding `queue_limit` bytes: one event takes at
    /// most a quarter of it (rendered), unless a single line is more. A
    /// member whose writer keeps its queue under three quarters full takes
    /// every batch whole, as it would take the same lines one by one; a
    /// batch larger than the queue would overflow every member at once.
    pub(super) fn new(queue_limit: usize, overhead: usize) -> Self {
        Said {
            texts: Vec::new(),
            bytes: 0,
            max_bytes: Self::MAX_BYTES.min(queue_limit / 4),
            overhead,
        }
    }

    /// Whether `text` can join the batch (an empty batch takes any line).
    pub(super) fn fits(&self, text: &str) -> bool {
        self.texts.is_empty() || self.bytes + self.overhead + text.len() <= self.max_bytes
    }

    pub(super) fn add(&mut self, text: &'a str) {
        self.texts.push(text);
        self.bytes += self.overhead + text.len();
    }

    pub(super) fn clear(&mut self) {
        self.texts.clear();
        self.bytes = 0;
    }
}
