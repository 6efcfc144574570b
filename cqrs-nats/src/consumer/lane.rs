//! Which JetStream consumer a [`Consumer`](super::Consumer) reads, and
//! under what proof: the durable consumer of its name, or one partition of
//! a consumer split by slice (see `partitioned`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cqrskit_core::StoreError;
use cqrskit_core::inbox::{Inbox, PartitionKey, PartitionLeases};

/// What a consumer reads and proves.
pub(super) struct Lane<I: Inbox> {
    /// The JetStream consumer read.
    pub(super) name: String,
    /// For a partition, its lease, proven in every handler transaction.
    pub(super) fence: Option<Arc<dyn Fence<I>>>,
    /// Messages up to this stream sequence may have been handled or
    /// dead-lettered through an earlier JetStream consumer of the partition:
    /// their first delivery here may be a redelivery.
    pub(super) redelivered_through: u64,
    /// Whether it carries out the replays of dead letters an operator asked
    /// for (one lane of a split consumer does).
    pub(super) replays: bool,
}

impl<I: Inbox> Lane<I> {
    /// The durable consumer `name`, unsplit.
    pub(super) fn whole(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fence: None,
            redelivered_through: 0,
            replays: true,
        }
    }
}

impl<I: Inbox> Clone for Lane<I> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            fence: self.fence.clone(),
            redelivered_through: self.redelivered_through,
            replays: self.replays,
        }
    }
}

/// The proof, inside a handler's transaction, that the writer still holds
/// what it reads.
#[async_trait]
pub(super) trait Fence<I: Inbox>: Send + Sync {
    /// Whether the lease still holds; the transaction keeps it from being
    /// taken over until it ends.
    async fn holds(&self, inbox: &I, transaction: &mut I::Transaction) -> Result<bool, StoreError>;

    /// The partition, for errors and logs.
    fn partition(&self) -> u32;
}

/// A partition's lease under its fencing token.
pub(super) struct Lease {
    pub(super) consumer: String,
    pub(super) partition: u32,
    pub(super) owner: String,
    pub(super) token: i64,
    /// How long the handler's transaction may idle before the store ends
    /// it (its writer frozen).
    pub(super) bound: Duration,
}

#[async_trait]
impl<I: PartitionLeases> Fence<I> for Lease {
    async fn holds(&self, inbox: &I, transaction: &mut I::Transaction) -> Result<bool, StoreError> {
        let key = PartitionKey {
            consumer: &self.consumer,
            partition: self.partition,
            owner: &self.owner,
        };
        inbox.hold(transaction, key, self.token, self.bound).await
    }

    fn partition(&self) -> u32 {
        self.partition
    }
}
