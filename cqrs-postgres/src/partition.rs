//! Slices and partitions: how a projection's work is split across
//! instances.
//!
//! Every stream falls in one of [`SLICES`] slices, stored with each of its
//! events ([`StreamId::slice`](cqrskit_core::StreamId::slice)) and fixed
//! forever. A
//! projection split into `count` partitions gives partition `index` a
//! contiguous range of slices; since a stream never leaves its slice, each
//! stream's events are applied by one partition, in order.

use std::ops::RangeInclusive;

use cqrskit_core::SLICES;

use crate::Error;

/// One of a projection's partitions: the slices it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partition {
    index: u16,
    count: u16,
}

impl Partition {
    /// Partition `index` (from 0) of `count`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPartition`] unless `1 <= count <= SLICES` and
    /// `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self, Error> {
        let invalid = || Error::InvalidPartition { index, count };
        let count16 = u16::try_from(count).map_err(|_| invalid())?;
        let index16 = u16::try_from(index).map_err(|_| invalid())?;
        if count16 == 0 || count16 > SLICES || index16 >= count16 {
            return Err(invalid());
        }
        Ok(Self {
            index: index16,
            count: count16,
        })
    }

    /// The whole log: the one partition of an unpartitioned projection.
    pub fn whole() -> Self {
        Self { index: 0, count: 1 }
    }

    /// Every partition of a projection split `count` ways.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn all(count: usize) -> Result<Vec<Self>, Error> {
        (0..count.max(1))
            .map(|index| Self::new(index, count))
            .collect()
    }

    /// Its index, from 0.
    pub fn index(&self) -> usize {
        self.index.into()
    }

    /// How many partitions the projection has.
    pub fn count(&self) -> usize {
        self.count.into()
    }

    /// The slices it applies: an equal share of [`SLICES`], contiguous.
    pub fn slices(&self) -> RangeInclusive<u16> {
        let bound = |index: u16| u32::from(index) * u32::from(SLICES) / u32::from(self.count);
        // Both bounds are at most SLICES, which fits.
        let first = u16::try_from(bound(self.index)).unwrap_or(SLICES);
        let end = u16::try_from(bound(self.index + 1)).unwrap_or(SLICES);
        first..=end.saturating_sub(1)
    }

    /// Whether it applies the whole log.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The name of its row (checkpoint, lease, dead letters) for the
    /// projection `projection`: the projection's own name for the whole
    /// log, `<projection>[<index>/<count>]` otherwise.
    pub fn row_name(&self, projection: &str) -> String {
        if self.is_whole() {
            projection.to_owned()
        } else {
            format!("{projection}[{}/{}]", self.index, self.count)
        }
    }

    /// Whether its slices lie within `other`'s: a partition split off
    /// `other` may start from `other`'s checkpoint without applying
    /// anything twice.
    pub fn within(&self, other: &Partition) -> bool {
        let (mine, theirs) = (self.slices(), other.slices());
        theirs.start() <= mine.start() && mine.end() <= theirs.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_every_slice_once_in_contiguous_ranges() {
        for count in [1, 2, 3, 7, 8, 1000, 1024] {
            let mut next = 0;
            for partition in Partition::all(count).expect("valid") {
                let slices = partition.slices();
                assert_eq!(*slices.start(), next, "{count} partitions");
                assert!(slices.start() <= slices.end());
                next = slices.end() + 1;
            }
            assert_eq!(next, SLICES, "{count} partitions end at the last slice");
        }
    }

    #[test]
    fn a_split_partition_lies_within_its_parent() {
        let parent = Partition::new(1, 4).expect("valid");
        let halves: Vec<_> = [2, 3]
            .into_iter()
            .map(|index| Partition::new(index, 8).expect("valid"))
            .collect();
        assert!(halves.iter().all(|half| half.within(&parent)));
        assert!(!Partition::new(4, 8).expect("valid").within(&parent));
        assert!(parent.within(&Partition::whole()));
    }

    #[test]
    fn impossible_partitions_are_refused_and_names_tell_them_apart() {
        assert!(Partition::new(0, 0).is_err());
        assert!(Partition::new(3, 3).is_err());
        assert!(Partition::new(0, 1025).is_err());
        assert_eq!(Partition::whole().row_name("ledger"), "ledger");
        assert_eq!(
            Partition::new(2, 8).expect("valid").row_name("ledger"),
            "ledger[2/8]"
        );
    }
}
