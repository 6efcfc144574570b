//! The relay from the global log to JetStream, against a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::nats::{PublicAccountEvents, jetstream, unique};
use cqrs_tests::postgres::TestStore;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{CloudEvent, ContentMode, Relay, RelayOptions};
use cqrskit::postgres::testing::caught_up;
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner, RunnerOptions};
use cqrskit::{CommandPipeline, EventStore, LogFilter, Position};

/// Opens two accounts and moves money: six events, of which the publication
/// selects the two openings and the two withdrawals.
async fn some_banking(store: &PostgresEventStore) {
    let accounts = CommandPipeline::<BankAccount>::new(Arc::new(store.clone()), ());
    for id in ["a", "b"] {
        let owner = format!("owner of {id}");
        accounts
            .execute(id, OpenAccount { owner })
            .await
            .expect("open");
        accounts
            .execute(id, Deposit { amount: 100 })
            .await
            .expect("deposit");
        accounts
            .execute(id, Withdraw { amount: 30 })
            .await
            .expect("withdraw");
    }
}

fn relay(jetstream: &Context, prefix: &str, mode: ContentMode) -> Relay<PublicAccountEvents> {
    let mut options = RelayOptions::new(prefix, "/bank");
    options.mode = mode;
    Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        PublicAccountEvents,
        options,
    )
}

/// The messages of the relay's stream, in stream order.
async fn published(jetstream: &Context, prefix: &str) -> Vec<(String, CloudEvent, String)> {
    let stream_name = RelayOptions::new(prefix, "/bank")
        .stream
        .expect("a stream")
        .name;
    let mut stream = jetstream
        .get_stream(&stream_name)
        .await
        .expect("the stream");
    let count = stream.info().await.expect("info").state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await.expect("a message");
        let message_id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|id| id.as_str().to_owned())
            .expect("a message id");
        let event =
            CloudEvent::decode(Some(&message.headers), &message.payload).expect("a CloudEvent");
        messages.push((message.subject.to_string(), event, message_id));
    }
    messages
}

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
            assert_eq!(subject, &format!("{prefix}.account.{token}"));
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
        let stream = RelayOptions::new(&prefix, "/bank")
            .stream
            .expect("stream")
            .name;
        jetstream
            .delete_stream(&stream)
            .await
            .expect("delete the stream");
    }
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

    let prefix = unique("bank");
    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(relay(&jetstream, &prefix, ContentMode::Structured)),
    );
    assert!(runner.acquire_lease().await.expect("lease"));
    caught_up(&runner).await;
    let stream_name = RelayOptions::new(&prefix, "/bank")
        .stream
        .expect("stream")
        .name;
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
    runner.release_lease().await.expect("release");

    let prefix = unique("bank");
    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(relay(&jetstream, &prefix, ContentMode::Binary)),
    );
    assert!(runner.acquire_lease().await.expect("lease"));
    caught_up(&runner).await;
    let stream_name = RelayOptions::new(&prefix, "/bank")
        .stream
        .expect("stream")
        .name;
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
    runner.release_lease().await.expect("release");
    db.drop_schema().await;
}

/// Options for a relay whose lease lapses fast, so a test does not wait
/// long for a killed one's.
pub fn short_lease() -> RunnerOptions {
    RunnerOptions {
        lease_duration: Duration::from_millis(1500),
        ..RunnerOptions::default()
    }
}
