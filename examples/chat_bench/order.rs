//! The check that every member sees one order (several `--addr`, public
//! mode): each member's sequence of payloads is folded as it arrives, and
//! the sequences are compared at the end of the run.

/// Deliveries between two checkpoints of an [`OrderTrace`].
const ORDER_STRIDE: u64 = 128;

/// One member's sequence of payloads (several `--addr`, public mode),
/// folded into little memory: a running hash over its (sender, seq) pairs,
/// kept every [`ORDER_STRIDE`] deliveries. Two members saw the same order
/// on their common length when their checkpoints agree.
#[derive(Debug, Default, Clone)]
pub struct OrderTrace {
    hash: u64,
    count: u64,
    checkpoints: Vec<u64>,
}

/// A bijective mix of 64 bits (the finaliser of MurmurHash3).
#[inline]
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl OrderTrace {
    /// Appends one payload.
    #[inline]
    pub fn push(&mut self, sender: u32, seq: u64) {
        let key = fmix64((u64::from(sender) << 44) ^ seq);
        self.hash = fmix64(self.hash ^ key);
        self.count += 1;
        if self.count.is_multiple_of(ORDER_STRIDE) {
            self.checkpoints.push(self.hash);
        }
    }

    /// Payloads seen.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Where this sequence and `other` first differ on their common length,
    /// as a range of delivery numbers (from 1), or `None` if they agree.
    /// When the lengths differ, the last (under [`ORDER_STRIDE`]) payloads
    /// of the shorter one are not compared (they count as lost anyway).
    pub fn diverges_from(&self, other: &OrderTrace) -> Option<(u64, u64)> {
        let common = self.count.min(other.count);
        let full = (common / ORDER_STRIDE) as usize;
        if let Some(i) = (0..full).find(|&i| self.checkpoints[i] != other.checkpoints[i]) {
            let i = i as u64;
            return Some((i * ORDER_STRIDE + 1, (i + 1) * ORDER_STRIDE));
        }
        if self.count == other.count && self.hash != other.hash {
            return Some((full as u64 * ORDER_STRIDE + 1, common));
        }
        None
    }
}

/// Compares every member's sequence with the reference's: that of the
/// member that received the most (the lowest index among equals). Returns
/// how many members differ from it, and a line about the first of them.
pub fn violations(traces: &[(usize, OrderTrace)]) -> (u64, Option<String>) {
    let Some((r, reference)) = traces.iter().rev().max_by_key(|(_, o)| o.len()) else {
        return (0, None);
    };
    let mut count = 0;
    let mut first = None;
    for (m, trace) in traces {
        if m == r {
            continue;
        }
        if let Some((from, to)) = trace.diverges_from(reference) {
            count += 1;
            first.get_or_insert_with(|| {
                format!(
                    "member {m} and member {r} saw different payloads between their deliveries {from} and {to}"
                )
            });
        }
    }
    (count, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(pairs: &[(u32, u64)]) -> OrderTrace {
        let mut t = OrderTrace::default();
        for &(sender, seq) in pairs {
            t.push(sender, seq);
        }
        t
    }

    /// 1000 payloads of 3 senders, interleaved.
    fn room_order() -> Vec<(u32, u64)> {
        (0..1000u64).map(|i| ((i % 3) as u32, i / 3 + 1)).collect()
    }

    #[test]
    fn equal_sequences_agree_and_a_swap_is_found_where_it_is() {
        let order = room_order();
        assert_eq!(trace(&order).diverges_from(&trace(&order)), None);
        for at in [0, 500, 998] {
            let mut swapped = order.clone();
            swapped.swap(at, at + 1);
            // Per sender FIFO still holds: only the interleaving differs.
            let (from, to) = trace(&swapped)
                .diverges_from(&trace(&order))
                .expect("the swap is found");
            // The first delivery that differs (numbered from 1).
            let first = at as u64 + 1;
            assert!((from..=to).contains(&first), "{at}: {from}..{to}");
        }
    }

    #[test]
    fn a_shorter_sequence_is_compared_on_the_common_length() {
        let order = room_order();
        assert_eq!(trace(&order[..700]).diverges_from(&trace(&order)), None);
        let mut other = order.clone();
        other.swap(10, 11);
        assert!(trace(&other[..700]).diverges_from(&trace(&order)).is_some());
    }

    #[test]
    fn violations_count_the_members_that_differ_from_the_reference() {
        let order = room_order();
        let mut swapped = order.clone();
        swapped.swap(300, 301);
        let traces = vec![
            (0, trace(&order[..900])),
            (1, trace(&order)),
            (2, trace(&swapped)),
            (3, trace(&order)),
        ];
        let (violations, first) = violations(&traces);
        assert_eq!(violations, 1);
        let first = first.expect("named");
        assert!(first.starts_with("member 2 and member 1 "), "{first}");
    }
}
