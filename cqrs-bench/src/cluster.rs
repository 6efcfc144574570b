//! nats-cluster: the relay and a split consumer against a three-node
//! JetStream cluster of private nats-servers (R3 streams), and what syncing
//! every write costs a single server; each against a baseline measured in
//! the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cqrs_tests::nats::{NatsCluster, PrivateNats};
use cqrs_tests::partitioned::{create_stream, publish};
use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{CloudEvent, Consumer, ConsumerOptions, Handler, PartitionedConsumer};
use cqrskit::postgres::PostgresInbox;
use cqrskit::postgres::sqlx::{PgConnection, PgPool};
use cqrskit::{BoxError, async_trait};

use crate::relay::{median, nats, relay_against_direct, relay_rate, relayed_messages};
use crate::report::{Report, per_second};
use crate::scenarios::Sandbox;
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// How many partitions the split consumer's measured side has.
const PARTITIONS: usize = 4;

/// Rounds of the consumer scenario: one partition and [`PARTITIONS`] take
/// turns.
const ROUNDS: usize = 3;

/// Runs the three scenarios:
///
/// - `relay-cluster-r3`: the relay into an R3 stream, against the relay's
///   own messages published directly into an R3 stream;
/// - `consumer-split`: a consumer split in [`PARTITIONS`] partitions (one
///   instance reading them all) against the same consumer in one
///   partition, over the same R3 stream of messages;
/// - `relay-sync-always`: the relay into a single server that syncs every
///   write to disk (`sync_interval: always`), against one with the default
///   (every two minutes).
pub(crate) async fn nats_cluster(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let cluster = NatsCluster::start().await;
    let jetstream = jetstream::new(cluster.client().await);
    let sandbox = Sandbox::new(pool).await?;
    let events = (config.relay_events / 3).max(30);
    let per_stream = 1000.min(events);
    let total = sandbox
        .tally_log(events.div_ceil(per_stream), per_stream)
        .await?;
    let direct_prefix = format!("direct{}", uuid::Uuid::now_v7().simple());
    let messages = relayed_messages(&sandbox, &jetstream, &direct_prefix, total).await?;
    let (relayed, direct) = relay_against_direct(&sandbox, &jetstream, total, &messages, 3).await?;
    let mut reports = vec![Report::new("relay-cluster-r3", relayed, direct, "events/s")];

    let (split, whole) =
        split_against_whole(&sandbox, &jetstream, config.consumer_messages).await?;
    reports.push(Report::new("consumer-split", split, whole, "messages/s"));
    drop(cluster);

    let syncing = PrivateNats::start_with("jetstream { sync_interval: always }").await;
    let default = PrivateNats::start().await;
    let mut rates = Vec::new();
    for server in [&syncing, &default] {
        let client = cqrskit::nats::async_nats::connect(server.url())
            .await
            .map_err(nats)?;
        rates.push(relay_rate(&sandbox, &jetstream::new(client), total).await?);
    }
    reports.push(Report::new(
        "relay-sync-always",
        rates[0],
        rates[1],
        "events/s",
    ));
    sandbox.drop().await?;
    Ok(reports)
}

/// Counts the messages it handles (recording each in the inbox, as every
/// consumer does).
struct Count(Arc<AtomicUsize>);

#[async_trait]
impl Handler<PgConnection> for Count {
    async fn handle(
        &self,
        _: &CloudEvent,
        _: &mut PgConnection,
    ) -> std::result::Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Publishes `count` messages of 256 accounts into an R3 stream as the
/// relay would, then reads them all, in alternating rounds, with a fresh
/// consumer split in [`PARTITIONS`] and a fresh one in one partition (one
/// instance each): the median rates, from the start to the last message
/// handled.
async fn split_against_whole(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    count: usize,
) -> Result<(f64, f64)> {
    let prefix = format!("split{}", uuid::Uuid::now_v7().simple());
    let stream = create_stream(jetstream, &prefix, 3).await;
    let accounts = 256_u64;
    for n in 0..count as u64 {
        publish(jetstream, &prefix, n % accounts, n / accounts + 1).await;
    }
    let (mut split, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        split.push(read_all(sandbox, jetstream, &stream, &prefix, PARTITIONS, count).await?);
        whole.push(read_all(sandbox, jetstream, &stream, &prefix, 1, count).await?);
    }
    jetstream.delete_stream(&stream).await.map_err(nats)?;
    Ok((median(split), median(whole)))
}

/// One fresh consumer in `partitions` partitions over the stream's `count`
/// messages: its rate.
async fn read_all(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    stream: &str,
    prefix: &str,
    partitions: usize,
    count: usize,
) -> Result<f64> {
    let handled = Arc::new(AtomicUsize::new(0));
    let durable = format!("bench{}", uuid::Uuid::now_v7().simple());
    let consumer = Consumer::new(
        PostgresInbox::new(&sandbox.store),
        jetstream.clone(),
        Count(handled.clone()),
        ConsumerOptions::new(stream, &durable),
    );
    let split = PartitionedConsumer::new(consumer, prefix, partitions)
        .map_err(|error| BenchError::Task(error.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(async move {
        split
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    while handled.load(Ordering::Relaxed) < count {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(BenchError::Verification(format!(
                "consumer-split: {} of {count} messages handled in 300 s",
                handled.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = per_second(count, started.elapsed());
    let _ = stop.send(());
    running
        .await
        .map_err(|error| BenchError::Task(error.to_string()))?
        .map_err(|error| BenchError::Task(error.to_string()))?;
    let handled = handled.load(Ordering::Relaxed);
    if handled != count {
        return Err(BenchError::Verification(format!(
            "consumer-split: {handled} messages handled for {count}"
        )));
    }
    Ok(rate)
}
