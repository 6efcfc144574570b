//! A consumer split by slice into partitions, shared out among the
//! instances that run it, with the inbox's store as the coordinator.
//!
//! Partition `i` of `n` reads the messages of the streams whose slices
//! partition `i` of a projection split `n` ways applies, through one filter
//! subject on the relay's route tokens (see
//! [`ConsumerPartition`](crate::ConsumerPartition)). Each instance records
//! itself every third of the lease and counts the instances seen within a
//! lease; it takes free or lapsed partitions while it holds fewer than an
//! equal share (rounded up) and gives partitions up while it holds more, as
//! the partitioned projection runner does.
//!
//! Order across a handover: a partition's holder reads a JetStream
//! consumer of its own, named after the partition and its lease's fencing
//! token. Taking a partition over makes a new one that starts at the
//! previous one's acknowledgement floor, and deletes the previous one: the
//! messages the last holder had not acknowledged come again, in stream
//! order and before anything later (those it had committed are recognised
//! by the inbox), instead of being redelivered after newer ones once their
//! acknowledgement wait ran out. A holder that froze and woke up after the
//! takeover reads a consumer that is gone, and every transaction it opens
//! fails the lease check: it writes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cqrskit_core::inbox::{DeadLetters, PartitionKey, PartitionLeases};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::lane::{Lane, Lease};
use super::succession::{self, Successor};
use super::{Consumer, Handler};
use crate::{ConsumerPartition, Error, MAX_PARTITIONS};

/// A [`Consumer`] split into partitions by slice, each partition handled
/// by one instance at a time (see the module docs).
pub struct PartitionedConsumer<I: DeadLetters, H> {
    consumer: Consumer<I, H>,
    subject_prefix: String,
    partitions: Vec<ConsumerPartition>,
    owner: String,
    lease: Duration,
    held: Arc<Mutex<Vec<usize>>>,
}

/// A partition this instance reads.
struct Running {
    token: i64,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl<I, H> PartitionedConsumer<I, H>
where
    I: DeadLetters + PartitionLeases,
    H: Handler<I::Connection>,
{
    /// `consumer` split into `partitions` partitions, reading what a relay
    /// publishes under `subject_prefix` (its options' filter subject is not
    /// used: each partition reads its own). The consumer's durable name
    /// keys its inbox, dead letters and leases; its partitions' JetStream
    /// consumers are named `<durable>-p<index>of<count>-<token>`. A lease of
    /// 10 s and a fresh owner id by default.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPartitions`] unless `partitions` is a power of two
    /// from 1 to [`MAX_PARTITIONS`].
    // The crate's one error, as every other method returns it.
    #[allow(clippy::result_large_err)]
    pub fn new(
        consumer: Consumer<I, H>,
        subject_prefix: impl Into<String>,
        partitions: usize,
    ) -> Result<Self, Error> {
        let invalid = || Error::InvalidPartitions {
            consumer: consumer.options.durable.clone(),
            partitions,
            max: MAX_PARTITIONS,
        };
        let split = (0..partitions.max(1))
            .map(|index| ConsumerPartition::new(index, partitions))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?;
        Ok(Self {
            owner: format!("consumer-{}", uuid::Uuid::now_v7()),
            consumer,
            subject_prefix: subject_prefix.into(),
            partitions: split,
            lease: Duration::from_secs(10),
            held: Arc::default(),
        })
    }

    /// Names this instance (unique per instance): the holder of its
    /// leases.
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How long a partition's lease lasts unrenewed (renewed every third of
    /// it): how long the partitions of an instance that died or froze wait
    /// before another takes them. At least 300 ms.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The consumer's durable name.
    pub fn name(&self) -> &str {
        &self.consumer.options.durable
    }

    /// This instance's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[ConsumerPartition] {
        &self.partitions
    }

    /// The indexes of the partitions this instance reads now.
    pub fn held(&self) -> Vec<usize> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn key(&self, index: usize) -> PartitionKey<'_> {
        PartitionKey {
            consumer: &self.consumer.options.durable,
            // At most MAX_PARTITIONS.
            partition: u32::try_from(index).unwrap_or(u32::MAX),
            owner: &self.owner,
        }
    }

    /// Checks the stream and records the split, refusing a partition count
    /// other than the one on record, and deletes the JetStream consumers of
    /// an earlier split (`<durable>-p<i>of<m>-<token>`, `m` another count).
    /// [`run`](Self::run) calls it first.
    ///
    /// # Errors
    ///
    /// When the stream is missing or NATS or the store refuses;
    /// [`Error::PartitionCount`] when instances disagree on the count.
    pub async fn setup(&self) -> Result<(), Error> {
        let consumer = &self.consumer;
        let stream = consumer.stream().await?;
        let count = self.partitions.len();
        let recorded = consumer
            .inbox
            .partitioning(&consumer.options.durable, u32::try_from(count).unwrap_or(0))
            .await
            .map_err(|error| consumer.store(error))?;
        if usize::try_from(recorded).ok() != Some(count) {
            return Err(Error::PartitionCount {
                consumer: consumer.options.durable.clone(),
                configured: count,
                recorded: usize::try_from(recorded).unwrap_or_default(),
            });
        }
        succession::forget_other_splits(&stream, self.name(), count)
            .await
            .map_err(|error| consumer.nats(error))
    }

    /// Runs this instance's share of the partitions until `shutdown`
    /// completes, then stops reading (letting the handlers at work finish),
    /// gives every lease up and leaves, so the other instances take its
    /// partitions at once. Failures after the start are logged and waited
    /// out; a partition taken over while this instance was away is let go.
    ///
    /// # Errors
    ///
    /// As [`setup`](Self::setup).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        self.setup().await?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut running = BTreeMap::new();
        let mut beat = tokio::time::interval(self.lease / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.as_mut() => break,
                _ = beat.tick() => self.rebalance(&mut running).await,
            }
        }
        for (index, lane) in std::mem::take(&mut running) {
            self.let_go(index, lane).await;
        }
        self.publish_held(&running);
        let consumer = &self.consumer;
        if let Err(error) = consumer
            .inbox
            .leave(&consumer.options.durable, &self.owner)
            .await
        {
            tracing::warn!(consumer = %self.name(), %error, "cannot record that this instance left; the others count it out when its heartbeat lapses");
        }
        Ok(())
    }

    /// One beat: lets go of the partitions lost, renews the others, and
    /// moves toward an equal share.
    async fn rebalance(&self, running: &mut BTreeMap<usize, Running>) {
        let inbox = &self.consumer.inbox;
        let ended: Vec<usize> = running
            .iter()
            .filter(|(_, lane)| lane.task.is_finished())
            .map(|(&index, _)| index)
            .collect();
        for index in ended {
            if let Some(lane) = running.remove(&index) {
                tracing::warn!(consumer = %self.name(), partition = index, "the partition's reading stopped (taken over, or deliveries lost); letting it go");
                self.let_go(index, lane).await;
            }
        }
        let mut lost = Vec::new();
        for (&index, lane) in running.iter() {
            match inbox.renew(self.key(index), lane.token, self.lease).await {
                Ok(true) => {}
                Ok(false) => lost.push(index),
                // The lease lapses if the store stays away, and the lane's
                // transactions fail their lease check meanwhile.
                Err(error) => {
                    tracing::warn!(consumer = %self.name(), partition = index, %error, "cannot renew the lease");
                }
            }
        }
        for index in lost {
            if let Some(lane) = running.remove(&index) {
                tracing::warn!(consumer = %self.name(), partition = index, "the lease was taken over; letting the partition go");
                self.let_go(index, lane).await;
            }
        }
        let instances = match inbox
            .heartbeat(&self.consumer.options.durable, &self.owner, self.lease)
            .await
        {
            Ok(instances) => instances,
            Err(error) => {
                tracing::warn!(consumer = %self.name(), %error, "cannot record this instance; keeping its partitions");
                self.publish_held(running);
                return;
            }
        };
        let count = self.partitions.len();
        let share = count.div_ceil(instances.max(1));
        while running.len() > share {
            let Some((index, lane)) = running.pop_last() else {
                break;
            };
            tracing::info!(consumer = %self.name(), partition = index, instances, "giving a partition up for another instance");
            self.let_go(index, lane).await;
        }
        let first = offset(&self.owner, count);
        for index in (0..count).map(|step| (first + step) % count) {
            if running.len() >= share {
                break;
            }
            if running.contains_key(&index) {
                continue;
            }
            match self.take(index).await {
                Ok(Some(lane)) => {
                    running.insert(index, lane);
                }
                Ok(None) => {}
                Err(error) => {
                    // NATS or the store is unwell: the next beat, which
                    // renews the leases held, must not wait for more.
                    tracing::warn!(consumer = %self.name(), partition = index, %error, "cannot take the partition; trying again later");
                    break;
                }
            }
        }
        self.publish_held(running);
    }

    fn publish_held(&self, running: &BTreeMap<usize, Running>) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) =
            running.keys().copied().collect();
        metrics::gauge!(
            crate::telemetry::CONSUMER_PARTITIONS_HELD,
            "consumer" => self.name().to_owned(),
            "owner" => self.owner.clone()
        )
        .set(running.len() as f64);
    }

    /// Takes partition `index` if it is free or lapsed, and starts reading
    /// it; `None` when another instance holds it.
    async fn take(&self, index: usize) -> Result<Option<Running>, Error> {
        let consumer = &self.consumer;
        let key = self.key(index);
        let Some(token) = consumer
            .inbox
            .acquire(key, self.lease)
            .await
            .map_err(|error| consumer.store(error))?
        else {
            return Ok(None);
        };
        let Successor {
            name,
            start,
            redelivered_through,
        } = match self.successor(index, token).await {
            Ok(made) => made,
            Err(error) => {
                let _ = consumer.inbox.release(key, token).await;
                return Err(error);
            }
        };
        tracing::info!(consumer = %self.name(), partition = index, token, jetstream_consumer = %name, start, "partition taken");
        let lane = consumer.on_lane(Lane {
            name,
            fence: Some(Arc::new(Lease {
                consumer: consumer.options.durable.clone(),
                partition: key.partition,
                owner: self.owner.clone(),
                token,
                bound: self.lease,
            })),
            redelivered_through,
            replays: index == 0,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(error) = lane.run(stopped).await {
                tracing::warn!(consumer = %lane.options.durable, partition = index, %error, "the partition's reading stopped");
            }
        });
        Ok(Some(Running { token, stop, task }))
    }

    /// Makes the JetStream consumer of partition `index` under `token`
    /// (see [`succession::succeed`]).
    async fn successor(&self, index: usize, token: i64) -> Result<Successor, Error> {
        let consumer = &self.consumer;
        let stream = consumer.stream().await?;
        let partition = self.partitions[index];
        succession::succeed(
            &stream,
            &consumer.options,
            partition,
            partition.filter_subject(&self.subject_prefix),
            token,
        )
        .await
        .map_err(|error| consumer.nats(error))
    }

    /// Stops reading partition `index` (the handler at work finishes) and
    /// gives its lease up.
    async fn let_go(&self, index: usize, lane: Running) {
        let Running { token, stop, task } = lane;
        let _ = stop.send(());
        if let Err(panic) = task.await {
            tracing::error!(consumer = %self.name(), partition = index, %panic, "the partition's reading panicked");
        }
        if let Err(error) = self.consumer.inbox.release(self.key(index), token).await {
            tracing::warn!(consumer = %self.name(), partition = index, %error, "cannot give the lease up; it lapses");
        }
    }
}

/// Where an instance starts looking for free partitions: spread by its
/// owner id, so that instances starting together do not all race for the
/// same ones.
fn offset(owner: &str, count: usize) -> usize {
    let hash = owner.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(hash % u64::try_from(count.max(1)).unwrap_or(1)).unwrap_or(0)
}
