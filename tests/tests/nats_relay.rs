//! The relay from the global log to JetStream, against a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use cqrs_tests::nats::{RecordWithdrawals, jetstream, relay_to_the_end, stream_of, unique};
use cqrs_tests::postgres::TestStore;
use cqrs_tests::relay::{
    Withdrawals, banking, message_count, published, published_cents, relay, some_banking,
    thirty_withdrawals, withdrawal_relay,
};
use cqrskit::nats::{CloudEvent, Consumer, ConsumerOptions, ContentMode};
use cqrskit::postgres::testing::caught_up;
use cqrskit::postgres::{PostgresInbox, ProjectionRunner};
use cqrskit::{EventStore, LogFilter, Position, StreamId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_the_selected_events_as_cloudevents_in_log_order() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    some_banking(&db.store).await;
    cqrs_tests::scenarios::settled(&db.shared(), 6).await;
    let stored = db
        .store
        .read_log(Position::START, &LogFilter::all(), 100)
        .await
        .expect("the log");

    for mode in [ContentMode::Structured, ContentMode::Binary] {
        let prefix = unique("bank");
        let runner =
            ProjectionRunner::new(db.store.clone(), Arc::new(relay(&jetstream, &prefix, mode)));
        assert!(runner.acquire_lease().await.expect("lease"));
        caught_up(&runner).await;

        // The stream the relay's setup created, as `StreamSpec` says.
        let config = jetstream
            .get_stream(stream_of(&prefix))
            .await
            .expect("the stream")
            .info()
            .await
            .expect("info")
            .config
            .clone();
        assert_eq!(config.subjects, [format!("{prefix}.>")]);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.num_replicas, 1);

        let messages = published(&jetstream, &prefix).await;
        let selected: Vec<_> = stored
            .iter()
            .filter(|event| event.event_type != "DepositMade")
            .collect();
        assert_eq!(
            messages.len(),
            selected.len(),
            "{mode:?}: one message per selected event"
        );
        for ((subject, event, message_id), stored) in messages.iter().zip(&selected) {
            assert_eq!(
                message_id,
                &stored.event_id.to_string(),
                "the message id is the event id"
            );
            assert_eq!(event.id, stored.event_id.to_string());
            let token = if stored.event_type == "AccountOpened" {
                "opened"
            } else {
                "withdrawn"
            };
            let slice = stored.stream.slice();
            let route = cqrskit::nats::route_tokens(slice);
            assert_eq!(
                subject,
                &format!("{prefix}.account.{token}.{slice}.{route}")
            );
            assert_eq!(event.extension("slice"), Some(slice.to_string()));
            assert_eq!(event.source, "/bank");
            assert_eq!(
                event.subject.as_deref(),
                Some(format!("account/{}", stored.stream.aggregate_id).as_str())
            );
            assert_eq!(
                event.extension("streamversion"),
                Some(stored.version.to_string())
            );
            assert_eq!(event.extension("schemaversion").as_deref(), Some("1"));
            assert_eq!(
                event.extension("correlationid"),
                stored.metadata.correlation_id.map(|id| id.to_string())
            );
            let data: serde_json::Value = event.data_as().expect("JSON data");
            assert_eq!(data["account"], stored.stream.aggregate_id);
        }
        // The public types, in log order: per account its opening before
        // its withdrawal.
        let types: Vec<&str> = messages
            .iter()
            .map(|(_, event, _)| event.event_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "bank.account.opened.v1",
                "bank.money.withdrawn.v1",
                "bank.account.opened.v1",
                "bank.money.withdrawn.v1"
            ]
        );
        runner.release_lease().await.expect("release");
        jetstream
            .delete_stream(stream_of(&prefix))
            .await
            .expect("delete the stream");
    }
    db.drop_schema().await;
}

/// The slice is the subject's last token: a consumer filtering on one slice
/// gets every message of the streams in it and none of the others, so
/// consumers can split the messages as partitioned projections split the
/// log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_one_slice_gets_exactly_the_messages_of_its_streams() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    let ids: Vec<String> = (0..12).map(|n| format!("acc-{n}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    banking(&db.store, &names).await;
    cqrs_tests::scenarios::settled(&db.shared(), ids.len() * 3).await;
    let prefix = relay_to_the_end(&db.store, &jetstream, ContentMode::Binary).await;
    let slice = |id: &str| StreamId::new("account", id).slice();
    let wanted = slice(&ids[0]);
    let in_slice: Vec<&String> = ids.iter().filter(|id| slice(id) == wanted).collect();
    assert!(
        in_slice.len() < ids.len(),
        "the accounts span several slices"
    );

    let options = ConsumerOptions::new(stream_of(&prefix), unique("slice"))
        .filter_subject(format!("{prefix}.*.*.{wanted}.>"));
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        RecordWithdrawals::create(db.pool(), &db.schema).await,
        options,
    );
    let mut received = Vec::new();
    while let Some(message) = consumer
        .fetch_one(Duration::from_millis(500))
        .await
        .expect("fetch")
    {
        let event =
            CloudEvent::decode(message.headers.as_ref(), &message.payload).expect("a CloudEvent");
        assert_eq!(event.extension("slice"), Some(wanted.to_string()));
        received.push(event.subject.expect("a subject"));
    }
    // Each account of the slice: its opening and its withdrawal.
    let expected: Vec<String> = in_slice
        .iter()
        .flat_map(|id| [format!("account/{id}"), format!("account/{id}")])
        .collect();
    let mut sorted = received.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "{received:?}");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// What the CloudEvents reference SDK makes of the relay's messages: a
/// structured message deserializes as its `Event`; a binary message's
/// headers build one with its validating builder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_sdk_reads_the_relays_messages_in_both_modes() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    some_banking(&db.store).await;

    let prefix = relay_to_the_end(&db.store, &jetstream, ContentMode::Structured).await;
    let stream_name = stream_of(&prefix);
    let stream = jetstream
        .get_stream(&stream_name)
        .await
        .expect("the stream");
    let message = stream.get_raw_message(1).await.expect("a message");
    assert_eq!(
        message
            .headers
            .get("content-type")
            .map(|value| value.as_str()),
        Some("application/cloudevents+json")
    );
    let event: cloudevents::Event =
        serde_json::from_slice(&message.payload).expect("the SDK reads the JSON event format");
    assert_eq!(event.ty(), "bank.account.opened.v1");
    assert_eq!(event.source().to_string(), "/bank");
    assert_eq!(event.specversion().to_string(), "1.0");
    assert!(event.time().is_some());
    assert!(event.extension("streamversion").is_some());

    let prefix = relay_to_the_end(&db.store, &jetstream, ContentMode::Binary).await;
    let stream_name = stream_of(&prefix);
    let stream = jetstream
        .get_stream(&stream_name)
        .await
        .expect("the stream");
    let message = stream.get_raw_message(1).await.expect("a message");
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_else(|| panic!("header {name}"))
    };
    assert_eq!(header("ce-specversion"), "1.0");
    let mut builder = EventBuilderV10::new()
        .id(header("ce-id"))
        .source(header("ce-source"))
        .ty(header("ce-type"))
        .time(header("ce-time"))
        .subject(header("ce-subject"));
    for extension in ["correlationid", "streamversion", "schemaversion"] {
        builder = builder.extension(extension, header(&format!("ce-{extension}")));
    }
    let data: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON data");
    let event = builder
        .data(header("content-type"), data)
        .build()
        .expect("the SDK's builder accepts the binary attributes");
    assert_eq!(event.ty(), "bank.account.opened.v1");
    db.drop_schema().await;
}

/// The batch the runner read ahead goes out while the one before it is
/// acknowledged and committed (past the checkpoint, which moves only over
/// acknowledged messages), and nothing is doubled or reordered by that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_the_next_batch_early_without_doubling_or_reordering() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    let prefix = unique("bank");
    let runner = withdrawal_relay(&db, &jetstream, &prefix, Withdrawals::default());
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.setup().await.expect("setup");

    assert_eq!(runner.step().await.expect("the first batch"), 10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while message_count(&jetstream, &prefix).await <= 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was published ahead of the checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = db
        .store
        .read_log(Position::START, &LogFilter::all(), 100)
        .await
        .expect("the log");
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        log[11].position,
        "the checkpoint is past the first ten withdrawals only"
    );

    assert_eq!(caught_up(&runner).await, 20);
    assert_eq!(
        published_cents(&jetstream, &prefix).await,
        (1..=30).collect::<Vec<_>>()
    );
    runner.release_lease().await.expect("release");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}
