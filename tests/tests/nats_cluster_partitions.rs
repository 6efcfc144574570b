//! A consumer split into four partitions, two instances of it, reading an
//! R3 stream of a three-node JetStream cluster while messages arrive: a
//! follower killed, the stream's leader cut off (SIGSTOP) and back, and
//! quorum lost (two nodes killed) and regained. The instances go on by
//! themselves after each fault; every message is handled once, each
//! account's in version order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_tests::nats::{NatsCluster, unique};
use cqrs_tests::partitioned::{
    RecordHandler, RunningSplit, assert_once_in_order, create_stream, create_table, handled,
    publish, spawn_split,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::nats::async_nats::jetstream::{self, Context};
use cqrskit::nats::{Consumer, ConsumerOptions, PartitionedConsumer};
use cqrskit::postgres::PostgresInbox;

const ACCOUNTS: u64 = 32;
const VERSIONS: u64 = 20;

/// How many messages were handled.
async fn count(db: &TestStore) -> usize {
    handled(db.pool(), &db.schema).await.len()
}

/// Waits until more than `than` messages were handled (at most 90 s); how
/// long it took.
async fn until_more(db: &TestStore, than: usize, what: &str) -> Duration {
    let started = Instant::now();
    while count(db).await <= than {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{what}: nothing handled past {than} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The outcomes the instances saw (`<id>: <outcome> at <attempt>`).
fn outcomes() -> &'static std::sync::Mutex<Vec<String>> {
    static OUTCOMES: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> =
        std::sync::OnceLock::new();
    OUTCOMES.get_or_init(Default::default)
}

/// An instance of the split consumer, running until the sender is used or
/// dropped.
fn instance(
    db: &TestStore,
    jetstream: &Context,
    stream: &str,
    prefix: &str,
    durable: &str,
    owner: &str,
) -> RunningSplit {
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        RecordHandler {
            table: format!("{}.partition_handled", db.schema),
            owner: owner.to_owned(),
        },
        ConsumerOptions::new(stream, durable).batch_size(20),
    )
    .with_outcome_hook(|observed| {
        // Every outcome, for a failure's report.
        let (_, id) = observed.identity.unwrap_or_default();
        outcomes().lock().expect("lock").push(format!(
            "{id}: {} at {}",
            observed.outcome.label(),
            observed.attempt
        ));
    });
    let split = Arc::new(
        PartitionedConsumer::new(consumer, prefix, 4)
            .expect("four")
            .with_owner(owner)
            .with_lease(Duration::from_millis(1500)),
    );
    spawn_split(split)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_consumer_of_an_r3_stream_goes_on_through_node_failures_and_lost_quorum() {
    // What the instances say about each fault (`--nocapture` shows it).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("cqrskit_nats=info")
        .with_test_writer()
        .try_init();
    let db = TestStore::new().await;
    create_table(db.pool(), &db.schema).await;
    let mut cluster = NatsCluster::start().await;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(cluster.client().await);
    let prefix = unique("ledger");
    let stream = create_stream(&jetstream, &prefix, 3).await;
    let durable = unique("ledger-projection");
    let instances = [
        instance(&db, &jetstream, &stream, &prefix, &durable, "x"),
        instance(&db, &jetstream, &stream, &prefix, &durable, "y"),
    ];
    let publisher = {
        let (jetstream, prefix) = (jetstream.clone(), prefix.clone());
        tokio::spawn(async move {
            for version in 1..=VERSIONS {
                for n in 0..ACCOUNTS {
                    publish(&jetstream, &prefix, n, version).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let total = usize::try_from(ACCOUNTS * VERSIONS).expect("fits");
    until_more(&db, total / 8, "start").await;

    // A follower of the stream dies.
    let leader = cluster.leader_of(&jetstream, &stream).await;
    let follower = (leader + 1) % 3;
    cluster.nodes[follower].kill();
    let after_follower = until_more(&db, count(&db).await, "follower killed").await;
    cluster.nodes[follower].resume().await;

    // The leader is cut off for 8 s (frozen: its connections stay open and
    // silent), then comes back.
    until_more(&db, total / 3, "before the cut").await;
    let leader = cluster.leader_of(&jetstream, &stream).await;
    cluster.nodes[leader].signal("-STOP");
    let cut_at = Instant::now();
    let during_cut = until_more(&db, count(&db).await, "leader cut off").await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(cut_at.elapsed())).await;
    cluster.nodes[leader].signal("-CONT");

    // Quorum lost: two nodes down for 5 s, then back.
    until_more(&db, total / 2, "before quorum loss").await;
    let survivor = cluster.leader_of(&jetstream, &stream).await;
    let down: Vec<usize> = (0..3).filter(|&node| node != survivor).collect();
    for &node in &down {
        cluster.nodes[node].kill();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stalled = count(&db).await;
    for &node in &down {
        cluster.nodes[node].resume().await;
    }
    let after_quorum = until_more(&db, stalled, "quorum back").await;

    publisher.await.expect("published");
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&db).await < total {
        if Instant::now() > deadline {
            let rows = handled(db.pool(), &db.schema).await;
            let done: HashSet<(String, i64)> = rows
                .into_iter()
                .map(|(account, version, _)| (account, version))
                .collect();
            let missing: Vec<String> = (0..ACCOUNTS)
                .flat_map(|n| (1..=VERSIONS).map(move |version| (n, version)))
                .filter(|(n, version)| {
                    !done.contains(&(format!("acc-{n}"), i64::try_from(*version).expect("small")))
                })
                .map(|(n, version)| format!("acc-{n} v{version}"))
                .collect();
            // Where the partitions' JetStream consumers stand, to tell a
            // message held unacknowledged from one skipped.
            let mut stream = jetstream.get_stream(&stream).await.expect("the stream");
            let mut infos = Vec::new();
            let mut names = stream.consumer_names();
            while let Some(Ok(name)) = cqrs_tests::nats::next(&mut names).await {
                if let Ok(info) = stream.consumer_info(&name).await {
                    infos.push(format!(
                        "{name}: floor {}, delivered {}, pending {}, unacknowledged {}, redelivered {}",
                        info.ack_floor.stream_sequence,
                        info.delivered.stream_sequence,
                        info.num_pending,
                        info.num_ack_pending,
                        info.num_redelivered
                    ));
                }
            }
            let last = stream
                .info()
                .await
                .map_or(0, |info| info.state.last_sequence);
            // What the stream holds: each message id once, or not?
            let mut ids = std::collections::BTreeMap::<String, Vec<u64>>::new();
            for sequence in 1..=last {
                if let Ok(message) = stream.get_raw_message(sequence).await {
                    let id = message
                        .headers
                        .get("Nats-Msg-Id")
                        .map_or_else(String::new, |id| id.to_string());
                    ids.entry(id).or_default().push(sequence);
                }
            }
            let doubled: Vec<_> = ids.iter().filter(|(_, at)| at.len() > 1).collect();
            let stored: Vec<_> = missing
                .iter()
                .map(|wanted| {
                    let id = wanted.replace(" v", "-v");
                    (id.clone(), ids.get(&id).cloned())
                })
                .collect();
            let all = outcomes().lock().expect("lock").clone();
            let seen: Vec<&String> = all
                .iter()
                .filter(|outcome| {
                    stored
                        .iter()
                        .any(|(id, _)| outcome.starts_with(&format!("{id}:")))
                })
                .collect();
            let unusual: Vec<&String> = all
                .iter()
                .filter(|outcome| !outcome.contains(": handled at"))
                .collect();
            panic!(
                "not handled 90 s after the last message: {missing:?}; stream at {last}; \
                 stored at {stored:?}; stored twice {doubled:?}; {infos:#?}; \
                 their outcomes {seen:?}; outcomes other than handled {unusual:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "split consumer on R3: handling went on {after_follower:?} after a follower's kill, \
         {during_cut:?} after the leader was cut off, {after_quorum:?} after quorum returned"
    );
    for (stop, task) in instances {
        let _ = stop.send(());
        task.await
            .expect("the instance stopped")
            .expect("the instance ran");
    }

    let rows = handled(db.pool(), &db.schema).await;
    assert_once_in_order(&rows, ACCOUNTS, VERSIONS);
}
