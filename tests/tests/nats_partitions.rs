//! A consumer split into partitions by slice, its instances OS processes
//! under a steady flow of messages: one killed with SIGKILL, one frozen
//! with SIGSTOP past its lease and woken, one joining, one leaving. Every
//! message is handled once in effect, each account's in version order.
//! The instances talk to a nats-server of the test's own.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use cqrs_tests::instances::Instances;
use cqrs_tests::nats::{PrivateNats, connect, jetstream, unique};
use cqrs_tests::partitioned::{
    assert_once_in_order, create_stream, create_table, handled, publish,
};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{Consumer, ConsumerOptions, Error, PartitionedConsumer, consumer_lag};
use cqrskit::postgres::PostgresInbox;

const LEASE_MS: u64 = 1500;
const PARTITIONS: usize = 4;
const ACCOUNTS: u64 = 64;
const VERSIONS: u64 = 12;

/// The split consumer's setting, shared by its instances.
struct Setting {
    url: String,
    stream: String,
    prefix: String,
    durable: String,
}

impl Setting {
    async fn new(jetstream: &Context, url: String) -> Self {
        let prefix = unique("ledger");
        let stream = create_stream(jetstream, &prefix, 1).await;
        Self {
            url,
            stream,
            prefix,
            durable: unique("ledger-projection"),
        }
    }
}

/// An instance process.
fn instance(db: &TestStore, setting: &Setting, owner: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_partitioned_consumer"));
    command
        .env("DATABASE_URL", database_url())
        .env("SCHEMA", &db.schema)
        .env("NATS_URL", &setting.url)
        .env("STREAM", &setting.stream)
        .env("PREFIX", &setting.prefix)
        .env("DURABLE", &setting.durable)
        .env("OWNER", owner)
        .env("LEASE_MS", LEASE_MS.to_string())
        .env("PARTITIONS", PARTITIONS.to_string());
    command
}

/// Waits until at least `count` messages were handled (at most 120 s).
async fn until_handled(db: &TestStore, count: usize) -> Vec<(String, i64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows = handled(db.pool(), &db.schema).await;
        if rows.len() >= count {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} handled after 120 s",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Four partitions over three instances; 64 accounts publish 12 versions
/// each, one message every 15 ms. Meanwhile: instance `a` is killed
/// (SIGKILL), `b` frozen (SIGSTOP) for twice the lease and woken, `d`
/// joins and `c` leaves. Each message is handled once, each account's
/// versions in order; the instances left hold every partition, and the
/// partitions' earlier JetStream consumers are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_consumer_keeps_each_stream_in_order_through_kills_freezes_and_joins() {
    let db = TestStore::new().await;
    create_table(db.pool(), &db.schema).await;
    let server = PrivateNats::start().await;
    let jetstream = cqrskit::nats::async_nats::jetstream::new(connect(&server.url()).await);
    let setting = Setting::new(&jetstream, server.url()).await;
    let mut instances = Instances::default();
    for owner in ["a", "b", "c"] {
        instances.start(owner, instance(&db, &setting, owner));
    }
    let publisher = {
        let (jetstream, prefix) = (jetstream.clone(), setting.prefix.clone());
        tokio::spawn(async move {
            for version in 1..=VERSIONS {
                for n in 0..ACCOUNTS {
                    publish(&jetstream, &prefix, n, version).await;
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
        })
    };
    let total = usize::try_from(ACCOUNTS * VERSIONS).expect("fits");

    until_handled(&db, total / 6).await;
    instances.signal("-KILL", "a");
    until_handled(&db, total / 3).await;
    instances.signal("-STOP", "b");
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    instances.signal("-CONT", "b");
    until_handled(&db, total / 2).await;
    instances.start("d", instance(&db, &setting, "d"));
    until_handled(&db, total * 2 / 3).await;
    instances.leave("c");
    publisher.await.expect("published");
    let rows = until_handled(&db, total).await;
    // Anything handled twice would come within a lease or two.
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    let rows = if handled(db.pool(), &db.schema).await.len() > rows.len() {
        handled(db.pool(), &db.schema).await
    } else {
        rows
    };

    assert_once_in_order(&rows, ACCOUNTS, VERSIONS);
    let owners: HashSet<&str> = rows.iter().map(|(_, _, owner)| owner.as_str()).collect();
    assert!(
        owners.contains("d") && owners.len() >= 3,
        "partitions moved between instances: {owners:?}"
    );

    // The partitions' JetStream consumers: one each, the earlier ones gone.
    let stream = jetstream.get_stream(&setting.stream).await.expect("stream");
    assert_eq!(stream.cached_info().state.consumer_count, PARTITIONS);
    // Its lag, as an operator reads it: the partitions' consumers summed.
    let lag = consumer_lag(&jetstream, &setting.durable)
        .await
        .expect("lag")
        .expect("the split consumer is found");
    assert_eq!(
        (lag.stream.as_str(), lag.pending, lag.unacknowledged),
        (setting.stream.as_str(), 0, 0)
    );
    instances.leave("b");
    instances.leave("d");
}

/// Partition counts that are no power of two, and instances that disagree
/// on the count, are refused with errors that say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_counts_that_cannot_work_are_refused() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let setting = Setting::new(&jetstream, cqrs_tests::nats::nats_url()).await;
    let consumer = || {
        Consumer::new(
            PostgresInbox::new(&db.store),
            jetstream.clone(),
            cqrs_tests::partitioned::RecordHandler {
                table: "unused".to_owned(),
                owner: "x".to_owned(),
            },
            ConsumerOptions::new(&setting.stream, &setting.durable),
        )
    };
    let three = PartitionedConsumer::new(consumer(), &setting.prefix, 3)
        .err()
        .expect("3 refused");
    assert!(
        matches!(three, Error::InvalidPartitions { partitions: 3, .. }),
        "{three}"
    );
    assert!(three.to_string().contains("power of two"), "{three}");

    PartitionedConsumer::new(consumer(), &setting.prefix, 4)
        .expect("4")
        .setup()
        .await
        .expect("the first instance records 4");
    let eight = PartitionedConsumer::new(consumer(), &setting.prefix, 8)
        .expect("8")
        .run(std::future::pending())
        .await
        .expect_err("8 after 4 refused");
    assert!(
        matches!(
            eight,
            Error::PartitionCount {
                configured: 8,
                recorded: 4,
                ..
            }
        ),
        "{eight}"
    );
}

/// Splitting a consumer another way: its split is forgotten once every
/// instance stopped (`cqrs-admin consumer-partitions <consumer> reset`),
/// and the next instance, with another count, deletes the JetStream
/// consumers of the old split before reading with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_split_again_another_way_leaves_no_old_jetstream_consumers() {
    let db = TestStore::new().await;
    create_table(db.pool(), &db.schema).await;
    let jetstream = jetstream().await;
    let setting = Setting::new(&jetstream, cqrs_tests::nats::nats_url()).await;
    let split = |count: usize| {
        let consumer = Consumer::new(
            PostgresInbox::new(&db.store),
            jetstream.clone(),
            cqrs_tests::partitioned::RecordHandler {
                table: format!("{}.partition_handled", db.schema),
                owner: "only".to_owned(),
            },
            ConsumerOptions::new(&setting.stream, &setting.durable),
        );
        std::sync::Arc::new(
            PartitionedConsumer::new(consumer, &setting.prefix, count)
                .expect("a power of two")
                .with_owner("only"),
        )
    };
    let consumers = || async {
        jetstream
            .get_stream(&setting.stream)
            .await
            .expect("stream")
            .cached_info()
            .state
            .consumer_count
    };
    // Runs `split` until it reads all its partitions, then stops it.
    let read_all = |split: std::sync::Arc<PartitionedConsumer<PostgresInbox, _>>| async move {
        let (stop, running) = cqrs_tests::partitioned::spawn_split(split.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while split.held().len() < split.partitions().len() {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", split.held());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        running.await.expect("join").expect("ran");
    };

    read_all(split(2)).await;
    assert_eq!(consumers().await, 2, "one JetStream consumer per partition");
    let admin = cqrskit::postgres::admin::Admin::new(db.store.clone());
    assert_eq!(
        admin
            .reset_consumer_partitions(&setting.durable)
            .await
            .expect("reset"),
        2
    );
    split(4)
        .setup()
        .await
        .expect("another count, after the reset");
    assert_eq!(
        consumers().await,
        0,
        "the old split's consumers are deleted"
    );
    read_all(split(4)).await;
    assert_eq!(consumers().await, 4);
}
