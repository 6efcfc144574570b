//! What a runner reads of the log, decided once when it is made: the
//! projector's event types, the slices of its partition, and whether the
//! metadata comes along. Every query of the runner (its batches, the
//! batches read ahead, the lag, the horizon) selects through it, so they
//! cannot disagree on what the projection reads.

use std::ops::RangeInclusive;

use cqrskit_core::LogFilter;

use crate::Partition;
use crate::projection::pending::Reads;
use crate::store::LogRead;

/// The events a runner reads.
#[derive(Debug)]
pub(super) struct Selection {
    partition: Partition,
    /// `None` for the whole log.
    slices: Option<RangeInclusive<u16>>,
    filter: LogFilter,
    /// The projector's event types, sorted and without repeats: what the
    /// projection records as its subscription.
    subscription: Vec<String>,
    /// Whether the projector reads metadata: if not, the log is read
    /// without it.
    reads_metadata: bool,
}

impl Selection {
    /// The whole log's events of `event_types`.
    pub(super) fn new(event_types: &[&str], reads_metadata: bool) -> Self {
        let mut subscription: Vec<String> =
            event_types.iter().map(|name| (*name).to_owned()).collect();
        subscription.sort();
        subscription.dedup();
        Self {
            partition: Partition::whole(),
            slices: None,
            filter: LogFilter::event_types(event_types.iter().copied()),
            subscription,
            reads_metadata,
        }
    }

    /// The same events, of `partition`'s streams only.
    pub(super) fn in_partition(self, partition: Partition) -> Self {
        Self {
            partition,
            slices: (!partition.is_whole()).then(|| partition.slices()),
            ..self
        }
    }

    /// The partition it reads.
    pub(super) fn partition(&self) -> Partition {
        self.partition
    }

    /// The event types as the projection records them: sorted, without
    /// repeats.
    pub(super) fn subscription(&self) -> &[String] {
        &self.subscription
    }

    /// A read of at most `limit` events and about `max_bytes` of payload.
    pub(super) fn log_read(&self, limit: usize, max_bytes: usize) -> LogRead<'_> {
        LogRead {
            filter: &self.filter,
            slices: self.slices.as_ref(),
            limit,
            max_bytes,
            with_metadata: self.reads_metadata,
        }
    }

    /// What a count of pending events selects.
    pub(super) fn reads(&self) -> Reads<'_> {
        Reads {
            types: self.event_types(),
            slices: self.slice_bounds(),
        }
    }

    /// The event types it reads, `None` for every type.
    pub(super) fn event_types(&self) -> Option<&[String]> {
        (!self.filter.event_types.is_empty()).then_some(&self.filter.event_types[..])
    }

    /// Its first and last slice as the column's type, `None` for the whole
    /// log.
    pub(super) fn slice_bounds(&self) -> Option<(i16, i16)> {
        self.slices.as_ref().map(|slices| {
            let column = |slice: u16| i16::try_from(slice).unwrap_or(i16::MAX);
            (column(*slices.start()), column(*slices.end()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_records_its_types_once_and_in_order_and_narrows_to_a_partition() {
        let whole = Selection::new(&["b", "a", "b"], false);
        assert_eq!(whole.subscription(), ["a", "b"]);
        assert_eq!(whole.slice_bounds(), None);
        assert!(whole.log_read(10, 100).slices.is_none());

        let partition = Partition::new(1, 4).expect("a valid partition");
        let part = whole.in_partition(partition);
        let slices = partition.slices();
        let bounds = (
            i16::try_from(*slices.start()).expect("a slice fits"),
            i16::try_from(*slices.end()).expect("a slice fits"),
        );
        assert_eq!(part.slice_bounds(), Some(bounds));
        assert_eq!(part.reads().slices, Some(bounds));
        assert_eq!(part.log_read(10, 100).slices, Some(&slices));
        assert_eq!(part.partition(), partition);
    }

    #[test]
    fn a_selection_of_no_types_reads_every_type() {
        let all = Selection::new(&[], true);
        assert_eq!(all.event_types(), None);
        assert!(all.log_read(1, 1).with_metadata);
    }
}
