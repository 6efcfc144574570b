//! The crate's error.

use cqrskit_core::{BoxError, ErrorKind, StoreError};

use crate::CloudEventError;

/// Why a consumer stopped, or refused what it was asked: one error for the
/// crate, whose [`kind`](Error::kind) says what a caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (the inbox, the dead letters, a commit).
    #[error("consumer `{consumer}`: the store failed: {source}")]
    Store {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// NATS failed (fetching, acknowledging, creating the consumer).
    #[error("consumer `{consumer}`: NATS failed: {source}")]
    Nats {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Replaying a dead letter: the handler failed again. The dead letter
    /// stays, and nothing of the attempt was written.
    #[error("consumer `{consumer}`: the handler failed again: {source}")]
    Handler {
        /// The consumer.
        consumer: String,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Replaying a dead letter: the stored message is no CloudEvent; only a
    /// fix of the message itself could help.
    #[error("consumer `{consumer}`: the dead letter is no CloudEvent: {source}")]
    NotACloudEvent {
        /// The consumer.
        consumer: String,
        /// What is wrong with it.
        #[source]
        source: CloudEventError,
    },
    /// A partition of a split consumer was taken over by another instance
    /// (this one froze or was cut off past its lease): it stops reading
    /// it, and what it was handling is handled by the new holder.
    #[error("consumer `{consumer}`: partition {partition} was taken over by another instance")]
    PartitionLost {
        /// The consumer.
        consumer: String,
        /// The partition.
        partition: u32,
    },
    /// A split consumer's partition count is not one it can be split into.
    #[error(
        "consumer `{consumer}`: cannot be split into {partitions} partitions \
         (a power of two from 1 to {max} is needed: each partition reads one filter subject)"
    )]
    InvalidPartitions {
        /// The consumer.
        consumer: String,
        /// The count asked for.
        partitions: usize,
        /// The most partitions.
        max: usize,
    },
    /// Instances of a split consumer disagree on its partition count: two
    /// counts would read overlapping slices in two orders. Stop every
    /// instance, then run `cqrs-admin consumer-partitions <consumer> reset`
    /// to change the count.
    #[error(
        "consumer `{consumer}` is split into {recorded} partitions, \
         and this instance is configured with {configured}"
    )]
    PartitionCount {
        /// The consumer.
        consumer: String,
        /// This instance's count.
        configured: usize,
        /// The count on record.
        recorded: usize,
    },
}

impl Error {
    /// What kind of failure this is: the store's own kind for a store
    /// failure; NATS failures are [`ErrorKind::Unavailable`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store { source, .. } => source.kind(),
            Error::Nats { .. } => ErrorKind::Unavailable,
            Error::Handler { .. } => ErrorKind::Backend,
            Error::NotACloudEvent { .. } => ErrorKind::CorruptData,
            Error::PartitionLost { .. } => ErrorKind::Conflict,
            Error::InvalidPartitions { .. } | Error::PartitionCount { .. } => {
                ErrorKind::Configuration
            }
        }
    }
}
