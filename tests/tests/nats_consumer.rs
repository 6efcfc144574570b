//! Consumers of integration events, against a real nats-server: each
//! message applied once in effect, retries, dead letters.

use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::nats::{
    RecordWithdrawals, jetstream, plain_stream, relayed, relayed_under, stream_of, unique,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::Backoff;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{Consumer, ConsumerOptions, ContentMode, Outcome};
use cqrskit::postgres::sqlx::PgConnection;
use cqrskit::postgres::{PostgresEventStore, PostgresInbox};

/// The withdrawals the handler recorded, in cents, as many times as handled.
async fn recorded(db: &TestStore) -> Vec<i64> {
    sqlx::query_scalar(&format!(
        "SELECT cents FROM {} ORDER BY cents",
        db.table("withdrawals_seen")
    ))
    .fetch_all(db.pool())
    .await
    .expect("withdrawals_seen")
}

/// Processes messages until none comes for a second.
async fn drain<H: cqrskit::nats::Handler<PgConnection>>(
    consumer: &Consumer<PostgresInbox, H>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    while let Some(message) = consumer
        .fetch_one(Duration::from_secs(1))
        .await
        .expect("fetch")
    {
        outcomes.push(consumer.process(message).await.expect("process"));
    }
    outcomes
}

/// A consumer killed (SIGKILL) after committing the handler's writes and
/// before acknowledging: JetStream delivers the message again, the inbox
/// recognises it, and the withdrawal is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_between_its_commit_and_its_ack_applies_the_message_once() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let stream = relayed(&db.store, &jetstream, &[30]).await;
    let durable = unique("shipping");

    // The process handles the opening (which the handler ignores) and
    // commits the withdrawal, then waits unacknowledged.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nats_consumer"))
        .env("DATABASE_URL", cqrs_tests::postgres::database_url())
        .env("SCHEMA", &db.schema)
        .env("NATS_URL", cqrs_tests::nats::nats_url())
        .env("STREAM", &stream)
        .env("DURABLE", &durable)
        .env("ACK_WAIT_MS", "1000")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start a consumer process");
    let stdout = child.stdout.take().expect("piped");
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next()
    })
    .await
    .expect("join");
    let line = line.expect("the consumer printed nothing").expect("a line");
    assert_eq!(line, "committed");
    let _ = child.kill();
    let _ = child.wait();

    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let options = ConsumerOptions::new(&stream, &durable).ack_wait(Duration::from_millis(1000));
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    );
    // The killed process's message comes back once its ack wait is over.
    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outcomes.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was redelivered"
        );
        outcomes.extend(drain(&consumer).await);
    }
    assert_eq!(
        outcomes,
        [Outcome::AlreadyProcessed],
        "the redelivered withdrawal was recognised, not handled again"
    );
    assert_eq!(
        recorded(&db).await,
        [30],
        "the withdrawal was recorded once"
    );
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// A handler that keeps failing is retried up to `max_deliver` deliveries,
/// then the message is dead-lettered (kept in the table, published to the
/// dead-letter subject) and JetStream stops delivering it; the messages
/// around it are handled. Once the cause is fixed, replaying the dead letter
/// handles it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_handler_keeps_refusing_is_dead_lettered_after_its_deliveries() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let stream = relayed(&db.store, &jetstream, &[5, 13, 7]).await;
    let dead_subject = unique("dead");
    // A dead-letter subject is published with JetStream acknowledgement: a
    // stream must capture it.
    let dead_stream = unique("DEAD");
    jetstream
        .create_stream(cqrskit::nats::async_nats::jetstream::stream::Config {
            name: dead_stream.clone(),
            subjects: vec![dead_subject.clone()],
            ..Default::default()
        })
        .await
        .expect("dead-letter stream");

    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let refuse_13 = handler.refuse_13.clone();
    let options = ConsumerOptions::new(&stream, unique("shipping"))
        .max_attempts(3)
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(50))
                .jitter(false),
        )
        .dead_letter_subject(dead_subject.clone());
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    );
    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !outcomes
        .iter()
        .any(|outcome| matches!(outcome, Outcome::DeadLettered { .. }))
    {
        assert!(tokio::time::Instant::now() < deadline, "got {outcomes:?}");
        outcomes.extend(drain(&consumer).await);
    }
    let retries = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Outcome::Retrying { .. }))
        .count();
    assert_eq!(retries, 2, "delivered three times in all: {outcomes:?}");
    assert_eq!(recorded(&db).await, [5, 7], "the others were handled");

    let parked = consumer.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].deliveries, 3);
    assert!(
        parked[0].reason.contains("13 cents"),
        "{}",
        parked[0].reason
    );
    let dead = jetstream
        .get_stream(&dead_stream)
        .await
        .expect("dead-letter stream");
    let published = dead
        .get_raw_message(1)
        .await
        .expect("the dead letter was published");
    assert!(
        published
            .headers
            .get("Cqrskit-Dead-Letter-Reason")
            .is_some_and(|reason| reason.as_str().contains("13 cents"))
    );
    // Nothing more comes: JetStream stopped delivering it.
    assert!(drain(&consumer).await.is_empty());

    // Replayed while the handler still refuses: nothing changes.
    assert!(
        consumer
            .replay_dead_letter(&parked[0].source, &parked[0].message_id)
            .await
            .is_err()
    );
    assert_eq!(
        consumer.dead_letters().await.expect("dead letters").len(),
        1
    );
    // The cause fixed, the replay handles it once and clears the dead letter.
    refuse_13.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        consumer
            .replay_dead_letter(&parked[0].source, &parked[0].message_id)
            .await
            .expect("replay")
    );
    assert_eq!(recorded(&db).await, [5, 7, 13]);
    assert!(
        consumer
            .dead_letters()
            .await
            .expect("dead letters")
            .is_empty()
    );
    assert!(
        !consumer
            .replay_dead_letter(&parked[0].source, &parked[0].message_id)
            .await
            .expect("replay")
    );
    // Four messages processed (the opening, 5, 7, and 13 by the replay):
    // their inbox rows are fresh, then pruned.
    assert_eq!(
        consumer
            .prune_inbox(Duration::from_secs(3600))
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        consumer.prune_inbox(Duration::ZERO).await.expect("prune"),
        4
    );
    assert_eq!(
        consumer.prune_inbox(Duration::ZERO).await.expect("prune"),
        0
    );
    for name in [&stream, &dead_stream] {
        jetstream
            .delete_stream(name)
            .await
            .expect("delete the stream");
    }
    db.drop_schema().await;
}

/// A message that is no CloudEvent cannot be handled at all: it is
/// dead-lettered at its first delivery, named by its message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_no_cloudevent_is_dead_lettered_at_once() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, subject) = plain_stream(&jetstream, "junk").await;
    let mut headers = cqrskit::nats::async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "junk-1");
    jetstream
        .publish_with_headers(subject, headers, "not an event".into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        ConsumerOptions::new(&stream, unique("shipping")),
    );
    let outcomes = drain(&consumer).await;
    assert!(
        matches!(&outcomes[..], [Outcome::DeadLettered { reason }] if reason.contains("not a CloudEvent")),
        "{outcomes:?}"
    );
    let parked = consumer.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id, "junk-1");
    assert_eq!(parked[0].deliveries, 1);
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// A message that is no CloudEvent, delivered again after it was given up
/// on (its termination lost): parked and published to the dead-letter
/// subject once, not once per delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_message_delivered_again_is_dead_lettered_once() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, subject) = plain_stream(&jetstream, "junk").await;
    let (dead_stream, dead_subject) = plain_stream(&jetstream, "junk-dlq").await;
    jetstream
        .publish(subject, "not an event".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let options = ConsumerOptions::new(&stream, unique("shipping"))
        .ack_wait(Duration::from_millis(500))
        .dead_letter_subject(&dead_subject);
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    );
    // Given up on, and its termination never sent (the process died).
    let first = consumer
        .fetch_one(Duration::from_secs(5))
        .await
        .expect("fetch")
        .expect("the message");
    let committed = consumer.commit(first).await.expect("commit");
    assert!(matches!(committed.outcome(), Outcome::DeadLettered { .. }));
    drop(committed);
    let again = consumer
        .fetch_one(Duration::from_secs(5))
        .await
        .expect("fetch")
        .expect("delivered again after the ack wait");
    let outcome = consumer.process(again).await.expect("process");
    assert!(
        matches!(outcome, Outcome::DeadLettered { .. }),
        "{outcome:?}"
    );
    let copies = jetstream
        .get_stream(&dead_stream)
        .await
        .expect("the dead-letter stream")
        .info()
        .await
        .expect("its info")
        .state
        .messages;
    assert_eq!(copies, 1, "one copy on the dead-letter subject");
    assert_eq!(
        consumer.dead_letters().await.expect("dead letters").len(),
        1
    );
    for name in [&stream, &dead_stream] {
        jetstream
            .delete_stream(name)
            .await
            .expect("delete a stream");
    }
    db.drop_schema().await;
}

/// Taking a message waits for one that arrives meanwhile, rather than
/// answering at once that there is none (which made an idle consumer's loop
/// spin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_message_waits_for_one_that_arrives_meanwhile() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let (stream, subject) = plain_stream(&jetstream, "late").await;
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        ConsumerOptions::new(&stream, unique("late")),
    );
    consumer.setup().await.expect("setup");
    let publisher = {
        let jetstream = jetstream.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            jetstream
                .publish(subject, "late".into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        })
    };
    let message = consumer
        .fetch_one(Duration::from_secs(10))
        .await
        .expect("fetch");
    publisher.await.expect("join");
    assert_eq!(
        message.map(|message| message.payload.to_vec()),
        Some(b"late".to_vec()),
        "the message published during the wait"
    );
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// `RecordWithdrawals`, panicking on 13 cents.
struct PanicsOn13(RecordWithdrawals);

#[cqrskit::async_trait]
impl cqrskit::nats::Handler<PgConnection> for PanicsOn13 {
    async fn handle(
        &self,
        event: &cqrskit::nats::CloudEvent,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<(), cqrskit::BoxError> {
        let cents: Option<i64> = event
            .data_as::<serde_json::Value>()
            .ok()
            .and_then(|data| data["cents"].as_i64());
        if cents == Some(13) {
            panic!("13 cents: the handler's own bug");
        }
        self.0.handle(event, transaction).await
    }
}

/// A handler that panics fails its message like one that returns an
/// error: nothing it wrote commits, the message is retried, then
/// dead-lettered with the panic's message; the consumer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_message_and_the_consumer_goes_on() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let stream = relayed(&db.store, &jetstream, &[13, 20]).await;
    let handler = PanicsOn13(RecordWithdrawals::create(db.pool(), &db.schema).await);
    let options = ConsumerOptions::new(&stream, unique("shipping"))
        .max_attempts(2)
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(10))
                .jitter(false),
        );
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        options,
    );

    let outcomes = drain(&consumer).await;
    let panicked = "the handler panicked: 13 cents: the handler's own bug";
    assert_eq!(
        outcomes,
        [
            Outcome::Handled,
            Outcome::Retrying {
                delivered: 1,
                reason: panicked.to_owned()
            },
            Outcome::Handled,
            Outcome::DeadLettered {
                reason: panicked.to_owned()
            },
        ],
        "the opening, 13 cents failing, 20 cents, 13 cents given up on"
    );
    assert_eq!(recorded(&db).await, [20]);
    let dead = consumer.dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, panicked);
    jetstream.delete_stream(&stream).await.expect("delete");
    db.drop_schema().await;
}

/// Publishes a withdrawal of `cents` from `acc` as the relay would, with a
/// fresh id, to the relay's subject under `prefix`.
async fn publish_withdrawal(jetstream: &Context, prefix: &str, cents: i64) {
    let event = cqrskit::nats::CloudEvent {
        id: uuid::Uuid::now_v7().to_string(),
        source: "/bank".into(),
        event_type: "bank.money.withdrawn.v1".into(),
        time: None,
        subject: Some("account/acc".into()),
        data_content_type: "application/json".into(),
        data: serde_json::value::to_raw_value(
            &serde_json::json!({ "account": "acc", "cents": cents }),
        )
        .expect("JSON"),
        extensions: Default::default(),
    };
    let (headers, body) = event.encode(ContentMode::Structured).expect("encode");
    jetstream
        .publish_with_headers(format!("{prefix}.account.withdrawn"), headers, body)
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// Waits until the handler recorded exactly `cents`, and checks that the
/// consumer is still running.
async fn wait_for_recorded(
    db: &TestStore,
    cents: &[i64],
    running: &tokio::task::JoinHandle<Result<(), cqrskit::nats::Error>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(!running.is_finished(), "the consumer stopped running");
        let seen = recorded(db).await;
        if seen == cents {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recorded {seen:?}, waiting for {cents:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The consumer's NATS server is killed (SIGKILL) and started again under a
/// running consumer, then its durable consumer is deleted: `run` returns
/// neither time, and handles what is published after each, every message
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_consumer_resumes_after_its_nats_server_restarts() {
    let db = TestStore::new().await;
    let mut server = cqrs_tests::nats::PrivateNats::start().await;
    let jetstream =
        cqrskit::nats::async_nats::jetstream::new(cqrs_tests::nats::connect(&server.url()).await);
    let prefix = relayed_under(&db.store, &jetstream, &[]).await;
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let durable = unique("shipping");
    let consumer = Arc::new(Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        handler,
        ConsumerOptions::new(stream_of(&prefix), &durable),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });
    publish_withdrawal(&jetstream, &prefix, 30).await;
    wait_for_recorded(&db, &[30], &running).await;

    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.resume().await;
    // Published once the client is back (it reconnects by itself).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            publish_withdrawal(&jetstream, &prefix, 40),
        )
        .await;
        if sent.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never reconnected"
        );
    }
    wait_for_recorded(&db, &[30, 40], &running).await;

    // The durable consumer deleted under it (an operator's mistake, a
    // stream restored elsewhere): the pull ends, `run` sets the consumer up
    // again, which delivers everything from the start, and the inbox
    // recognises what was handled.
    jetstream
        .delete_consumer_from_stream(&durable, stream_of(&prefix))
        .await
        .expect("delete the consumer");
    publish_withdrawal(&jetstream, &prefix, 50).await;
    wait_for_recorded(&db, &[30, 40, 50], &running).await;

    let _ = stop.send(());
    running
        .await
        .expect("join")
        .expect("a clean stop after the outages");
    db.drop_schema().await;
}

/// The consumer's database goes away while a message is at hand: the
/// consumer keeps the message (telling JetStream it is in progress, so it
/// is not redelivered though the outage outlasts the acknowledgement wait)
/// and handles it once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_keeps_its_message_through_a_database_outage() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let prefix = relayed_under(&db.store, &jetstream, &[]).await;
    let stream = stream_of(&prefix);
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let proxy = cqrs_tests::proxy::FaultProxy::to_test_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&proxy.database_url())
        .expect("a lazy pool");
    let store = PostgresEventStore::from_pool(pool)
        .with_schema(&db.schema)
        .expect("schema");
    let durable = unique("shipping");
    let options = ConsumerOptions::new(&stream, &durable).ack_wait(Duration::from_secs(1));
    let consumer = Arc::new(Consumer::new(
        PostgresInbox::new(&store),
        jetstream.clone(),
        handler,
        options,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });
    // The opening is handled (the handler ignores it): the inbox has it.
    let inbox = format!("SELECT count(*) FROM {}", db.table("inbox"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let handled: Result<i64, _> = sqlx::query_scalar(&inbox).fetch_one(db.pool()).await;
        if handled.is_ok_and(|handled| handled == 1) {
            break;
        }
        assert!(!running.is_finished(), "the consumer stopped running");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the opening was never handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.set_mode(cqrs_tests::proxy::Mode::Down);
    publish_withdrawal(&jetstream, &prefix, 30).await;
    // Three acknowledgement waits without a database.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(recorded(&db).await.is_empty());
    proxy.set_mode(cqrs_tests::proxy::Mode::Pass);
    wait_for_recorded(&db, &[30], &running).await;

    let mut jetstream_consumer = jetstream
        .get_consumer_from_stream::<cqrskit::nats::async_nats::jetstream::consumer::pull::Config, _, _>(
            &durable, &stream,
        )
        .await
        .expect("the durable consumer");
    let info = jetstream_consumer.info().await.expect("info");
    assert_eq!(
        info.delivered.consumer_sequence, 2,
        "two deliveries, the opening and the withdrawal: the withdrawal was kept, not redelivered"
    );
    assert!(
        consumer
            .dead_letters()
            .await
            .expect("dead letters")
            .is_empty()
    );
    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");
    jetstream.delete_stream(&stream).await.expect("delete");
    db.drop_schema().await;
}
