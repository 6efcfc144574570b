//! How a relayed message's subject routes it to one partition of a
//! consumer with a single filter subject.
//!
//! A stream's slice (0 to 1023, fixed forever) decides which partition of a
//! split consumer handles its messages, as it decides which partition of a
//! projection applies its events. NATS filters by whole subject tokens, and a
//! consumer with several filter subjects is four to six times slower to read
//! than one with a single filter (measured on nats-server 2.15, even with
//! two subjects), so a range of slices cannot be one filter over the slice's
//! decimal token. The relay therefore ends every subject with the top
//! [`ROUTE_BITS`] bits of the slice, one token per bit, most significant
//! first: partition `i` of `2^k` reads the slices whose top `k` bits are
//! `i`, which is the filter `<prefix>.*.*.*.<bit>…<bit>.>` — the same
//! slices partition `i` of a projection split `2^k` ways applies.

use cqrskit_core::SLICES;

/// How many route tokens end a subject: partition counts up to
/// `2^ROUTE_BITS` ([`MAX_PARTITIONS`]) are one filter subject each.
pub const ROUTE_BITS: u32 = 5;

/// The most partitions a consumer may be split into.
pub const MAX_PARTITIONS: usize = 1 << ROUTE_BITS;

/// The route tokens of `slice`: its top [`ROUTE_BITS`] bits as `0` or `1`,
/// dot-separated, most significant first. The relay ends its subjects with
/// them; a service publishing messages of its own for a split consumer
/// ends its subjects the same way (`<prefix>.<a>.<b>.<slice>.<route>`).
pub fn route_tokens(slice: u16) -> String {
    let group = u32::from(slice) * MAX_PARTITIONS as u32 / u32::from(SLICES);
    (0..ROUTE_BITS)
        .rev()
        .map(|bit| if group >> bit & 1 == 1 { "1" } else { "0" })
        .collect::<Vec<_>>()
        .join(".")
}

/// One part of a consumer split by slice: partition `index` of `count`
/// (a power of two up to [`MAX_PARTITIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerPartition {
    index: usize,
    count: usize,
}

impl ConsumerPartition {
    /// Partition `index` (from 0) of `count`; `None` unless `count` is a
    /// power of two from 1 to [`MAX_PARTITIONS`] and `index < count`.
    pub fn new(index: usize, count: usize) -> Option<Self> {
        (count.is_power_of_two() && count <= MAX_PARTITIONS && index < count)
            .then_some(Self { index, count })
    }

    /// Its index, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many partitions the consumer has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The slices it handles: the same range as partition `index` of a
    /// projection split `count` ways.
    pub fn slices(&self) -> std::ops::Range<u16> {
        let width = usize::from(SLICES) / self.count;
        // Both bounds are at most SLICES, which fits.
        let bound = |index: usize| u16::try_from(index * width).unwrap_or(SLICES);
        bound(self.index)..bound(self.index + 1)
    }

    /// The one filter subject that selects its messages among those a
    /// relay published under `prefix`.
    pub fn filter_subject(&self, prefix: &str) -> String {
        let bits = self.count.trailing_zeros();
        let mut subject = format!("{prefix}.*.*.*");
        for bit in (0..bits).rev() {
            subject.push_str(if self.index >> bit & 1 == 1 {
                ".1"
            } else {
                ".0"
            });
        }
        if bits < ROUTE_BITS {
            subject.push_str(".>");
        }
        subject
    }

    /// Whether it handles the messages of streams in `slice`.
    pub fn contains(&self, slice: u16) -> bool {
        self.slices().contains(&slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subject's route tokens, matched against a filter as NATS does
    /// (`*` one token, `>` the rest).
    fn matches(filter: &str, subject: &str) -> bool {
        let (filter, subject): (Vec<_>, Vec<_>) =
            (filter.split('.').collect(), subject.split('.').collect());
        for (position, token) in filter.iter().enumerate() {
            match *token {
                ">" => return subject.len() > position,
                "*" if position < subject.len() => {}
                literal if subject.get(position) == Some(&literal) => {}
                _ => return false,
            }
        }
        filter.len() == subject.len()
    }

    #[test]
    fn each_slice_is_read_by_exactly_the_partition_whose_range_holds_it() {
        for count in [1, 2, 4, 8, 16, 32] {
            let partitions: Vec<_> = (0..count)
                .map(|index| ConsumerPartition::new(index, count).expect("valid"))
                .collect();
            for slice in 0..SLICES {
                let subject = format!("bank.account.opened.{slice}.{}", route_tokens(slice));
                let readers: Vec<usize> = partitions
                    .iter()
                    .filter(|partition| matches(&partition.filter_subject("bank"), &subject))
                    .map(ConsumerPartition::index)
                    .collect();
                let owner: Vec<usize> = partitions
                    .iter()
                    .filter(|partition| partition.contains(slice))
                    .map(ConsumerPartition::index)
                    .collect();
                assert_eq!(readers, owner, "slice {slice} of {count}");
                assert_eq!(readers.len(), 1, "slice {slice} of {count}");
            }
        }
    }

    #[test]
    fn only_powers_of_two_up_to_the_route_bits_are_partition_counts() {
        assert!(ConsumerPartition::new(0, 3).is_none());
        assert!(ConsumerPartition::new(0, 64).is_none());
        assert!(ConsumerPartition::new(4, 4).is_none());
        assert_eq!(
            ConsumerPartition::new(2, 4)
                .expect("valid")
                .filter_subject("p"),
            "p.*.*.*.1.0.>"
        );
        assert_eq!(
            ConsumerPartition::new(0, 1)
                .expect("valid")
                .filter_subject("p"),
            "p.*.*.*.>"
        );
        assert_eq!(
            ConsumerPartition::new(5, 32)
                .expect("valid")
                .filter_subject("p"),
            "p.*.*.*.0.0.1.0.1"
        );
    }
}
