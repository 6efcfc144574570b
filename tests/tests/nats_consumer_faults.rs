//! Consumers at their boundaries, against a real nats-server: order kept
//! across retries, identity as CloudEvents define it, dead letters that
//! cannot be published, and instances set up at the same instant.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_tests::nats::{jetstream, plain_stream, unique};
use cqrs_tests::postgres::TestStore;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{CloudEvent, Consumer, ConsumerOptions, ContentMode, Handler, Outcome};
use cqrskit::postgres::PostgresInbox;
use cqrskit::postgres::sqlx::PgConnection;
use cqrskit::{Backoff, BoxError, async_trait};

/// Records each event it handles as a row (`source`, `subject`, `version`)
/// in handling order; fails the first attempt at every event whose subject
/// and version are in `fail_once`.
struct RecordInOrder {
    table: String,
    fail_once: HashSet<(String, u64)>,
    failed: Mutex<HashSet<(String, u64)>>,
}

impl RecordInOrder {
    async fn create(db: &TestStore, fail_once: impl IntoIterator<Item = (String, u64)>) -> Self {
        let table = db.table("handled");
        sqlx::query(&format!(
            "CREATE TABLE {table} (n bigserial PRIMARY KEY, source text NOT NULL, \
             subject text NOT NULL, version bigint NOT NULL)"
        ))
        .execute(db.pool())
        .await
        .expect("create the table");
        Self {
            table,
            fail_once: fail_once.into_iter().collect(),
            failed: Mutex::new(HashSet::new()),
        }
    }
}

#[async_trait]
impl Handler<PgConnection> for RecordInOrder {
    async fn handle(
        &self,
        event: &CloudEvent,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<(), BoxError> {
        let subject = event.subject.clone().unwrap_or_default();
        let version: u64 = event
            .extension("streamversion")
            .and_then(|version| version.parse().ok())
            .ok_or("no stream version")?;
        if self.fail_once.contains(&(subject.clone(), version))
            && self
                .failed
                .lock()
                .expect("lock")
                .insert((subject.clone(), version))
        {
            return Err(format!("{subject} v{version}: a passing failure").into());
        }
        sqlx::query(&format!(
            "INSERT INTO {} (source, subject, version) VALUES ($1, $2, $3)",
            self.table
        ))
        .bind(&event.source)
        .bind(&subject)
        .bind(i64::try_from(version)?)
        .execute(transaction)
        .await?;
        Ok(())
    }
}

/// The rows the handler wrote, in handling order.
async fn handled(db: &TestStore) -> Vec<(String, String, i64)> {
    sqlx::query_as(&format!(
        "SELECT source, subject, version FROM {} ORDER BY n",
        db.table("handled")
    ))
    .fetch_all(db.pool())
    .await
    .expect("handled rows")
}

/// Publishes a CloudEvent of `source` with `id`, about `subject` at
/// `version`, on `nats_subject`.
async fn publish(
    jetstream: &Context,
    nats_subject: &str,
    source: &str,
    id: &str,
    subject: &str,
    version: u64,
) {
    let mut extensions = std::collections::BTreeMap::new();
    extensions.insert("streamversion".to_owned(), serde_json::Value::from(version));
    let event = CloudEvent {
        id: id.to_owned(),
        source: source.to_owned(),
        event_type: "test.happened.v1".to_owned(),
        time: None,
        subject: Some(subject.to_owned()),
        data_content_type: "application/json".to_owned(),
        data: serde_json::value::to_raw_value(&serde_json::json!({})).expect("data"),
        extensions,
    };
    let (headers, body) = event.encode(ContentMode::Structured).expect("encode");
    jetstream
        .publish_with_headers(nats_subject.to_owned(), headers, body)
        .await
        .expect("publish")
        .await
        .expect("ack");
}

/// Publishes versions `1..=versions` of `streams` streams
/// (`account/acc-<n>`), one version of each stream after another.
async fn publish_interleaved(jetstream: &Context, subject: &str, streams: u64, versions: u64) {
    for version in 1..=versions {
        for account in 0..streams {
            publish(
                jetstream,
                subject,
                "/bank",
                &format!("acc-{account}-v{version}"),
                &format!("account/acc-{account}"),
                version,
            )
            .await;
        }
    }
}

/// Runs `consumer` until `done` holds for the handled rows (at most 120
/// s), then stops it.
async fn run_until<H: Handler<PgConnection>>(
    db: &TestStore,
    consumer: Arc<Consumer<PostgresInbox, H>>,
    done: impl Fn(&[(String, String, i64)]) -> bool,
) -> Vec<(String, String, i64)> {
    run_through_fault(db, consumer, usize::MAX, |_| {}, done).await
}

/// As [`run_until`], calling `fault` with the count of rows handled once
/// there are `fault_after` or more.
async fn run_through_fault<H: Handler<PgConnection>>(
    db: &TestStore,
    consumer: Arc<Consumer<PostgresInbox, H>>,
    fault_after: usize,
    fault: impl FnOnce(usize),
    done: impl Fn(&[(String, String, i64)]) -> bool,
) -> Vec<(String, String, i64)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        consumer
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    let mut fault = Some(fault);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let rows = handled(db).await;
        if rows.len() >= fault_after {
            if let Some(fault) = fault.take() {
                fault(rows.len());
            }
        }
        if done(&rows) {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline && !running.is_finished(),
            "{} rows after 120 s",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        fault.is_none() || fault_after == usize::MAX,
        "the fault happened"
    );
    let _ = stop.send(());
    running.await.expect("join").expect("the consumer ran");
    rows
}

/// Eight streams of 60 messages each, interleaved; the handler fails the
/// first attempt at versions 3, 17, 30 and 59 of the even-numbered streams
/// (16 passing failures). Each failed message is retried while the later
/// messages of its stream wait and the other streams go on: every stream
/// is handled in version order, each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_holds_back_its_stream_and_only_its_stream() {
    const STREAMS: u64 = 8;
    const VERSIONS: u64 = 60;
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, subject) = plain_stream(&jetstream, "ordered").await;
    publish_interleaved(&jetstream, &subject, STREAMS, VERSIONS).await;
    let fail_once = (0..STREAMS).step_by(2).flat_map(|account| {
        [3, 17, 30, 59].map(|version| (format!("account/acc-{account}"), version))
    });
    let handler = RecordInOrder::create(&db, fail_once).await;
    // Long enough for the other streams to go well past the failure.
    let options = ConsumerOptions::new(&stream, unique("ordered")).backoff(
        Backoff::default()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(1))
            .jitter(false),
    );
    let consumer = Arc::new(Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    ));
    let total = usize::try_from(STREAMS * VERSIONS).expect("a count");
    let rows = run_until(&db, consumer, |rows| rows.len() >= total).await;

    assert_eq!(rows.len(), total, "each message once");
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut out_of_order = Vec::new();
    for (_, subject, version) in &rows {
        if let Some(previous) = last.insert(subject, *version)
            && previous + 1 != *version
        {
            out_of_order.push(format!("{subject}: v{version} after v{previous}"));
        }
    }
    assert!(out_of_order.is_empty(), "{out_of_order:?}");
    // Held back the failed streams only: the others ran on meanwhile, so
    // the first failure (at v3) was handled after an odd stream's v6.
    let position = |subject: &str, version: i64| {
        rows.iter()
            .position(|(_, s, v)| s == subject && *v == version)
            .expect("handled")
    };
    assert!(position("account/acc-0", 3) > position("account/acc-1", 6));
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// Two different CloudEvents with the same `id` from two `source`s are two
/// messages (CloudEvents makes `source` + `id` unique): both are handled,
/// and a redelivery of either is still recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_from_two_sources_is_two_messages() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, subject) = plain_stream(&jetstream, "sources").await;
    publish(&jetstream, &subject, "/orders", "42", "order/1", 1).await;
    publish(&jetstream, &subject, "/payments", "42", "payment/1", 1).await;
    publish(&jetstream, &subject, "/orders", "42", "order/1", 1).await;
    let handler = RecordInOrder::create(&db, []).await;
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        ConsumerOptions::new(&stream, unique("sources")),
    );
    let mut outcomes = Vec::new();
    while let Some(message) = consumer
        .fetch_one(Duration::from_millis(500))
        .await
        .expect("fetch")
    {
        outcomes.push(consumer.process(message).await.expect("process"));
    }
    assert_eq!(
        outcomes,
        [
            Outcome::Handled,
            Outcome::Handled,
            Outcome::AlreadyProcessed
        ]
    );
    let sources: Vec<String> = handled(&db).await.into_iter().map(|row| row.0).collect();
    assert_eq!(sources, ["/orders", "/payments"]);
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// A dead-letter subject that no stream captures: the dead letter stays in
/// the table with the reason it was not published, and the consumer goes
/// on with the other messages instead of waiting for the database. A
/// dead-letter subject the consumer's own stream captures: the copy is
/// stored (with a message id of its own, not dropped as a duplicate of the
/// original), and the consumer does not handle its own dead letter again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_published_is_kept_and_the_consumer_goes_on() {
    let jetstream = jetstream().await;
    for captured_by_own_stream in [false, true] {
        let db = TestStore::new().await;
        let (stream, subject) = if captured_by_own_stream {
            let prefix = unique("own");
            let stream = unique("OWN");
            jetstream
                .create_stream(cqrskit::nats::async_nats::jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    ..Default::default()
                })
                .await
                .expect("a stream");
            (stream, format!("{prefix}.events"))
        } else {
            plain_stream(&jetstream, "nowhere").await
        };
        // A message of each of nine streams, the fifth one's failing at
        // every attempt, and one more of the fifth stream after it (held
        // back until the failing one is dead-lettered).
        for (account, version) in (0..9).map(|account| (account, 1)).chain([(4, 14)]) {
            let version = if (account, version) == (4, 1) {
                13
            } else {
                version
            };
            publish(
                &jetstream,
                &subject,
                "/bank",
                &format!("{stream}-{account}-{version}"),
                &format!("account/{account}"),
                version,
            )
            .await;
        }
        let handler = RecordInOrder::create(&db, []).await;
        let refusing = RefuseThirteen(handler);
        let options = ConsumerOptions::new(&stream, unique("dead"))
            .max_attempts(2)
            .backoff(
                Backoff::default()
                    .initial(Duration::from_millis(300))
                    .max(Duration::from_millis(300))
                    .jitter(false),
            )
            .dead_letter_subject(if captured_by_own_stream {
                subject.replace(".events", ".dead")
            } else {
                unique("captured_by_no_stream")
            });
        let consumer = Arc::new(Consumer::new(
            PostgresInbox::new(&db.store),
            jetstream.clone(),
            refusing,
            options,
        ));
        let rows = run_until(&db, consumer.clone(), |rows| rows.len() >= 9).await;
        assert_eq!(rows.len(), 9, "the nine good messages");
        assert_eq!(rows[8].2, 14, "the one after the dead letter came last");

        let parked = consumer.dead_letters().await.expect("dead letters");
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert_eq!(parked[0].deliveries, 2);
        if captured_by_own_stream {
            assert_eq!(parked[0].publish_error, None);
            let mut info = jetstream.get_stream(&stream).await.expect("stream");
            assert_eq!(
                info.info().await.expect("info").state.messages,
                11,
                "the ten messages and the dead letter's copy"
            );
            // The copy came back to the consumer and was recognised as its
            // own: nothing more was handled, nothing more dead-lettered.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(handled(&db).await.len(), 9);
            assert_eq!(
                consumer.dead_letters().await.expect("dead letters").len(),
                1
            );
        } else {
            let error = parked[0].publish_error.as_deref().expect("a publish error");
            assert!(error.contains("not published to"), "{error}");
        }
        jetstream
            .delete_stream(&stream)
            .await
            .expect("delete the stream");
        db.drop_schema().await;
    }
}

/// [`RecordInOrder`], refusing version 13 at every attempt.
struct RefuseThirteen(RecordInOrder);

#[async_trait]
impl Handler<PgConnection> for RefuseThirteen {
    async fn handle(
        &self,
        event: &CloudEvent,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<(), BoxError> {
        if event.extension("streamversion").as_deref() == Some("13") {
            return Err("13: refused at every attempt".into());
        }
        self.0.handle(event, transaction).await
    }
}

/// Instances of a consumer started at the same instant on a fresh schema
/// set it up together: none fails (`CREATE TABLE IF NOT EXISTS` in two
/// sessions at once made one fail on a duplicate key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_set_up_at_the_same_instant_all_start() {
    let jetstream = jetstream().await;
    let (stream, _) = plain_stream(&jetstream, "together").await;
    for _ in 0..3 {
        let db = TestStore::new().await;
        let durable = unique("together");
        let mut setups = Vec::new();
        for _ in 0..6 {
            let consumer = Consumer::new(
                PostgresInbox::new(&db.store),
                jetstream.clone(),
                RefuseAll,
                ConsumerOptions::new(&stream, &durable),
            );
            setups.push(tokio::spawn(
                async move { consumer.setup().await.map(drop) },
            ));
        }
        for setup in setups {
            setup
                .await
                .expect("join")
                .expect("set up beside the others");
        }
        db.drop_schema().await;
    }
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
}

/// A handler for tests that handle nothing.
struct RefuseAll;

#[async_trait]
impl Handler<PgConnection> for RefuseAll {
    async fn handle(&self, _: &CloudEvent, _: &mut sqlx::PgConnection) -> Result<(), BoxError> {
        Err("not for handling".into())
    }
}

/// Setting a consumer up again (every instance at its start, every pull
/// opened again) does not wait for the handlers in flight: bringing the
/// tables up to date takes no lock when there is nothing to change.
/// (`ALTER TABLE ... ADD COLUMN IF NOT EXISTS` took an exclusive lock each
/// time, queued behind every open inbox transaction and in front of every
/// new one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_up_again_does_not_wait_for_handlers_in_flight() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, _) = plain_stream(&jetstream, "inflight").await;
    let consumer = || {
        Consumer::new(
            PostgresInbox::new(&db.store),
            jetstream.clone(),
            RefuseAll,
            ConsumerOptions::new(&stream, "inflight"),
        )
    };
    consumer().setup().await.expect("set up");
    // A handler's transaction in flight, holding its inbox row.
    let mut in_flight = db.pool().begin().await.expect("begin");
    sqlx::query(&format!(
        "INSERT INTO {} (consumer, source, message_id) VALUES ('inflight', '/x', '1')",
        db.table("inbox")
    ))
    .execute(&mut *in_flight)
    .await
    .expect("an inbox row");
    tokio::time::timeout(Duration::from_secs(3), consumer().setup())
        .await
        .expect("set up again without waiting for the handler")
        .expect("set up again");
    in_flight.rollback().await.expect("rollback");
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// Six streams of 50 messages in an R3 stream of a three-node cluster; the
/// stream's leader is killed (SIGKILL) with most messages still to come.
/// The consumer goes on by itself with the new leader: every message
/// handled once, each stream in version order, within 20 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_an_r3_stream_goes_on_in_order_when_the_streams_leader_dies() {
    const STREAMS: u64 = 6;
    const VERSIONS: u64 = 50;
    let db = TestStore::new().await;
    let mut cluster = cqrs_tests::nats::NatsCluster::start().await;
    let jetstream = cqrskit::nats::async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(cluster.client().await);
    let (stream, subject) = (unique("CLUSTERED"), unique("clustered"));
    jetstream
        .create_stream(cqrskit::nats::async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    publish_interleaved(&jetstream, &subject, STREAMS, VERSIONS).await;
    let handler = RecordInOrder::create(&db, []).await;
    let options = ConsumerOptions::new(&stream, unique("clustered")).backoff(
        Backoff::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_millis(500)),
    );
    let consumer = Arc::new(Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    ));
    let total = usize::try_from(STREAMS * VERSIONS).expect("a count");
    // Killed early, most of the messages still to handle.
    let leader = cluster.leader_of(&jetstream, &stream).await;
    let killed_at = std::cell::Cell::new(None);
    let rows = run_through_fault(
        &db,
        consumer,
        total / 10,
        |handled| {
            assert!(handled < total, "killed with messages to come: {handled}");
            cluster.nodes[leader].kill();
            killed_at.set(Some(std::time::Instant::now()));
        },
        |rows| rows.len() >= total,
    )
    .await;
    assert!(!cluster.nodes[leader].is_running());
    let finished = killed_at.get().expect("killed").elapsed();
    println!("consumer: every message handled {finished:?} after the leader's kill");
    // Two missed heartbeats of the pull (2 s each), the followers' election
    // and the messages left: about 8 s at worst in four runs. (With the
    // client's default 15 s heartbeats it took up to 35 s.)
    assert!(
        finished < Duration::from_secs(20),
        "every message handled {finished:?} after the leader's kill"
    );

    assert_eq!(rows.len(), total, "each message once");
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (_, subject, version) in &rows {
        let previous = last.insert(subject, *version).unwrap_or(0);
        assert_eq!(
            previous + 1,
            *version,
            "{subject}: v{version} after v{previous}"
        );
    }
    db.drop_schema().await;
}
