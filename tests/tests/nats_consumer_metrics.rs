//! A consumer's metrics, scraped in Prometheus' text format, and its
//! per-message outcome hook, against a real nats-server.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cqrs_tests::nats::{RecordWithdrawals, jetstream, relayed, unique};
use cqrs_tests::postgres::TestStore;
use cqrskit::Backoff;
use cqrskit::nats::{Consumer, ConsumerOptions, Outcome};
use cqrskit::postgres::PostgresInbox;
use metrics_exporter_prometheus::PrometheusHandle;

/// The line of `metric` with `labels` in `scraped`, and its value.
fn value(scraped: &str, metric: &str, labels: &str) -> Option<f64> {
    scraped
        .lines()
        .find(|line| line.starts_with(&format!("{metric}{{{labels}}}")))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The recorder of this test binary, installed once for its tests.
fn recorder() -> &'static PrometheusHandle {
    static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
    RECORDER.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the recorder of this test binary")
    })
}

/// A consumer of `stream` as `durable` that tries a message twice, 10 ms
/// apart, with the handler that refuses 13 cents.
async fn metered(
    db: &TestStore,
    jetstream: &cqrskit::nats::async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
) -> Consumer<PostgresInbox, RecordWithdrawals> {
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let options = ConsumerOptions::new(stream, durable)
        .max_attempts(2)
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(10))
                .jitter(false),
        );
    Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_counts_each_outcome_reports_its_lag_and_tells_its_hook() {
    let recorder = recorder();
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    // Opened, deposited, then withdrawals of 30, 13 (refused by the
    // handler on every attempt) and 40: the public ones are relayed.
    let stream = relayed(&db.store, &jetstream, &[30, 13, 40]).await;
    let durable = unique("metered");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = metered(&db, &jetstream, &stream, &durable)
        .await
        .with_outcome_hook({
            let seen = seen.clone();
            move |observed| {
                let identity = observed.identity.map(|(_, id)| id.to_owned());
                seen.lock().expect("lock").push((
                    observed.attempt,
                    observed.outcome.label(),
                    identity,
                ));
            }
        });
    consumer.setup().await.expect("setup");
    let mut outcomes = Vec::new();
    while let Some(message) = consumer
        .fetch_one(Duration::from_secs(1))
        .await
        .expect("fetch")
    {
        outcomes.push(consumer.process(message).await.expect("process"));
    }
    // The relay publishes the account's public events: the opening and
    // the three withdrawals; 13 is tried twice (its redelivery comes
    // before or after 40, as the negative acknowledgement's 10 ms fall).
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let position = |wanted: fn(&Outcome) -> bool| outcomes.iter().position(wanted);
    let retried = position(|outcome| matches!(outcome, Outcome::Retrying { .. }));
    let given_up = position(|outcome| matches!(outcome, Outcome::DeadLettered { .. }));
    assert!(
        matches!((retried, given_up), (Some(retried), Some(given_up)) if retried < given_up),
        "{outcomes:?}"
    );

    let scraped = recorder.render();
    let count = |outcome: &str| {
        value(
            &scraped,
            "cqrskit_consumer_messages_total",
            &format!("consumer=\"{durable}\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(count("handled"), Some(3.0), "{scraped}");
    assert_eq!(count("retrying"), Some(1.0), "{scraped}");
    assert_eq!(count("dead_lettered"), Some(1.0), "{scraped}");
    assert_eq!(
        value(
            &scraped,
            "cqrskit_consumer_pending_messages",
            &format!("consumer=\"{durable}\"")
        ),
        Some(0.0),
        "{scraped}"
    );

    // The hook saw every message once per delivery, with its identity.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 5);
    let refused: Vec<_> = seen
        .iter()
        .filter(|(_, label, _)| *label != "handled")
        .map(|(attempt, label, _)| (*attempt, *label))
        .collect();
    assert_eq!(refused, [(1, "retrying"), (2, "dead_lettered")]);
    assert!(seen.iter().all(|(_, _, identity)| identity.is_some()));

    // Under `run` (in a host), the same messages through another durable
    // consumer: counted and told to the hook the same way.
    let durable = unique("metered-run");
    let taken = Arc::new(Mutex::new(Vec::new()));
    let consumer = metered(&db, &jetstream, &stream, &durable)
        .await
        .with_outcome_hook({
            let taken = taken.clone();
            move |observed| taken.lock().expect("lock").push(observed.outcome.label())
        });
    let host = cqrskit::host::Host::new().service(consumer);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while taken.lock().expect("lock").len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            taken.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");
    let mut labels = taken.lock().expect("lock").clone();
    labels.sort_unstable();
    assert_eq!(
        labels,
        ["dead_lettered", "handled", "handled", "handled", "retrying"]
    );
    let scraped = recorder.render();
    assert_eq!(
        value(
            &scraped,
            "cqrskit_consumer_messages_total",
            &format!("consumer=\"{durable}\",outcome=\"handled\"")
        ),
        Some(3.0),
        "{scraped}"
    );
    db.drop_schema().await;
}

/// A split consumer says how many partitions each instance reads, and
/// counts the pulls that fail while its server is away: why its lag grows
/// while nothing comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_consumer_reports_its_partitions_and_its_failed_pulls() {
    let recorder = recorder();
    let db = TestStore::new().await;
    cqrs_tests::partitioned::create_table(db.pool(), &db.schema).await;
    let mut server = cqrs_tests::nats::PrivateNats::start().await;
    let jetstream =
        cqrskit::nats::async_nats::jetstream::new(cqrs_tests::nats::connect(&server.url()).await);
    let prefix = unique("metered");
    let stream = cqrs_tests::partitioned::create_stream(&jetstream, &prefix, 1).await;
    let durable = unique("metered-split");
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        cqrs_tests::partitioned::RecordHandler {
            table: format!("{}.partition_handled", db.schema),
            owner: "only".to_owned(),
        },
        ConsumerOptions::new(&stream, &durable),
    );
    let split = Arc::new(
        cqrskit::nats::PartitionedConsumer::new(consumer, &prefix, 2)
            .expect("two")
            .with_owner("only")
            .with_lease(Duration::from_millis(600)),
    );
    let (stop, running) = cqrs_tests::partitioned::spawn_split(split.clone());
    let scraped = || recorder.render();
    let held = format!("consumer=\"{durable}\",owner=\"only\"");
    let failures = format!("consumer=\"{durable}\"");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while value(&scraped(), "cqrskit_consumer_partitions_held", &held) != Some(2.0) {
        assert!(tokio::time::Instant::now() < deadline, "{}", scraped());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(split.held(), [0, 1]);
    assert_eq!(
        value(
            &scraped(),
            "cqrskit_consumer_pull_failures_total",
            &failures
        ),
        None,
        "no failure yet"
    );

    server.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while value(
        &scraped(),
        "cqrskit_consumer_pull_failures_total",
        &failures,
    )
    .unwrap_or(0.0)
        < 2.0
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", scraped());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running
        .await
        .expect("join")
        .expect("the split consumer stopped cleanly");
    assert_eq!(
        value(&scraped(), "cqrskit_consumer_partitions_held", &held),
        Some(0.0),
        "it gave its partitions up"
    );
    db.drop_schema().await;
}
