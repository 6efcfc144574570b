//! Leases on the partitions of a consumer split by slice, kept in the
//! inbox's store so that the transaction that records a message also proves
//! that its writer still holds the message's partition.
//!
//! Each instance of a split consumer records itself ([`heartbeat`]) and
//! counts the instances seen lately; it takes free or lapsed partitions
//! while it holds fewer than its share and gives partitions up while it
//! holds more. A takeover moves the partition's fencing token; every
//! handler transaction first checks the token ([`hold`]) and keeps the
//! lease from being taken over until it ends, so an instance that froze
//! and woke up after its partition moved on writes nothing.
//!
//! [`heartbeat`]: PartitionLeases::heartbeat
//! [`hold`]: PartitionLeases::hold

use std::time::Duration;

use async_trait::async_trait;

use super::Inbox;
use crate::StoreError;

/// Who asks for a partition's lease: the consumer, the partition, the
/// instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionKey<'a> {
    /// The consumer (its durable name).
    pub consumer: &'a str,
    /// The partition's index, from 0.
    pub partition: u32,
    /// The instance asking (unique per running instance).
    pub owner: &'a str,
}

/// The leases on a split consumer's partitions (see the module docs).
#[async_trait]
pub trait PartitionLeases: Inbox {
    /// Records that `consumer` is split into `partitions` partitions, unless
    /// a split is recorded already, and returns the count on record: an
    /// instance configured with another count must not run.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn partitioning(&self, consumer: &str, partitions: u32) -> Result<u32, StoreError>;

    /// Records that `owner` runs `consumer` now, and returns how many
    /// instances (itself included) did so within `within`.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn heartbeat(
        &self,
        consumer: &str,
        owner: &str,
        within: Duration,
    ) -> Result<usize, StoreError>;

    /// Forgets that `owner` runs `consumer` (it stopped): the others count
    /// it out at once.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn leave(&self, consumer: &str, owner: &str) -> Result<(), StoreError>;

    /// Takes the partition for `key.owner` for `duration` if it is free,
    /// lapsed or already its own, and returns the new fencing token. Never
    /// waits: while a holder's transaction proves its lease, the partition
    /// is not taken.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn acquire(
        &self,
        key: PartitionKey<'_>,
        duration: Duration,
    ) -> Result<Option<i64>, StoreError>;

    /// Extends the lease held under `token` by `duration`; `false` when it
    /// was taken over.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn renew(
        &self,
        key: PartitionKey<'_>,
        token: i64,
        duration: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease held under `token` up, so another instance may take
    /// the partition at once.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn release(&self, key: PartitionKey<'_>, token: i64) -> Result<(), StoreError>;

    /// In `transaction`: whether `key.owner` holds the partition under
    /// `token`, its lease unexpired. When it does, no takeover happens
    /// until the transaction ends; a store that can should end the
    /// transaction when it idles longer than `bound` (its writer frozen or
    /// cut off), so that the partition is not held up for longer.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn hold(
        &self,
        transaction: &mut Self::Transaction,
        key: PartitionKey<'_>,
        token: i64,
        bound: Duration,
    ) -> Result<bool, StoreError>;
}
