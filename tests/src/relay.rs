//! The relay's side of the NATS tests: a relay of the bank's public events,
//! the banking that feeds it, and what its JetStream stream holds.

use std::sync::Arc;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrskit::CommandPipeline;
use cqrskit::Position;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{CloudEvent, ContentMode, POSITION_HEADER, Relay, RelayOptions};
use cqrskit::postgres::{FailurePolicy, PostgresEventStore, ProjectionRunner, RunnerOptions};
use std::collections::HashSet;

use crate::nats::{PublicAccountEvents, stream_of};
use crate::postgres::TestStore;

/// Opens two accounts and moves money: six events, of which the publication
/// selects the two openings and the two withdrawals.
pub async fn some_banking(store: &PostgresEventStore) {
    banking(store, &["a", "b"]).await;
}

/// Opens each account, deposits 100 and withdraws 30: three events each.
pub async fn banking(store: &PostgresEventStore, ids: &[&str]) {
    let accounts = CommandPipeline::<BankAccount>::new(Arc::new(store.clone()), ());
    for &id in ids {
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

/// A relay of the bank's public events under `prefix`, in `mode`, named
/// `relay_<prefix>`, into the stream its options name.
pub fn relay(jetstream: &Context, prefix: &str, mode: ContentMode) -> Relay<PublicAccountEvents> {
    let options = RelayOptions::new(prefix, "/bank").mode(mode);
    Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        PublicAccountEvents,
        options,
    )
}

/// Message `sequence` of `stream`, waiting out the 503s of a cluster that
/// just regained quorum (at most 30 s).
///
/// # Panics
///
/// When it cannot be read within 30 s.
async fn raw_message(
    stream: &cqrskit::nats::async_nats::jetstream::stream::Stream,
    sequence: u64,
) -> cqrskit::nats::async_nats::jetstream::message::StreamMessage {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match stream.get_raw_message(sequence).await {
            Ok(message) => return message,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => panic!("message {sequence}: {error}"),
        }
    }
}

/// The messages of the relay's stream, in stream order.
pub async fn published(jetstream: &Context, prefix: &str) -> Vec<(String, CloudEvent, String)> {
    let mut stream = jetstream
        .get_stream(stream_of(prefix))
        .await
        .expect("the stream");
    let count = stream.info().await.expect("info").state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = raw_message(&stream, sequence).await;
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

/// How many messages the stream of the relay under `prefix` holds.
pub async fn message_count(jetstream: &Context, prefix: &str) -> u64 {
    let mut stream = jetstream
        .get_stream(stream_of(prefix))
        .await
        .expect("the stream");
    stream.info().await.expect("info").state.messages
}

/// Every withdrawal, as `bank.money.withdrawn.v1` with its amount.
#[derive(Default)]
pub struct Withdrawals {
    /// The publication fails on the withdrawal of this many cents.
    pub refuse: Option<u64>,
    /// The message of the withdrawal of this many cents carries 4 KiB of
    /// padding besides.
    pub oversized: Option<u64>,
}

impl cqrskit::nats::Publication for Withdrawals {
    type Event = cqrs_examples::bank_account::AccountEvent;

    fn event_types(&self) -> &'static [&'static str] {
        &["WithdrawalMade"]
    }

    fn publish(
        &self,
        event: &cqrskit::EventEnvelope<Self::Event>,
    ) -> Result<Option<cqrskit::nats::Outgoing>, cqrskit::BoxError> {
        let cqrs_examples::bank_account::AccountEvent::WithdrawalMade(withdrawal) = &event.payload
        else {
            return Ok(None);
        };
        if Some(withdrawal.amount) == self.refuse {
            return Err(format!("{} cents cannot be published", withdrawal.amount).into());
        }
        let mut data = serde_json::json!({ "cents": withdrawal.amount });
        if Some(withdrawal.amount) == self.oversized {
            data["padding"] = "x".repeat(4096).into();
        }
        Ok(Some(cqrskit::nats::Outgoing::new(
            "bank.money.withdrawn.v1",
            &data,
        )?))
    }
}

/// Thirty withdrawals of 1 to 30 cents from one account, in that order.
pub async fn thirty_withdrawals(db: &TestStore) {
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 1000 })
        .await
        .expect("deposit");
    for cents in 1..=30 {
        accounts
            .execute("a", Withdraw { amount: cents })
            .await
            .expect("withdraw");
    }
    crate::scenarios::settled(&db.shared(), 32).await;
}

/// A relay of `withdrawals` in batches of ten, stopping at the first
/// event it cannot publish.
pub fn withdrawal_relay(
    db: &TestStore,
    jetstream: &Context,
    prefix: &str,
    withdrawals: Withdrawals,
) -> ProjectionRunner<Relay<Withdrawals>> {
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        withdrawals,
        RelayOptions::new(prefix, "/bank"),
    );
    ProjectionRunner::new(db.store.clone(), Arc::new(relay)).with_options(
        RunnerOptions::default()
            .batch_size(10)
            .failure(FailurePolicy::default().max_attempts(1)),
    )
}

/// The amounts of the messages in the relay's stream, in stream order.
pub async fn published_cents(jetstream: &Context, prefix: &str) -> Vec<u64> {
    published(jetstream, prefix)
        .await
        .iter()
        .map(|(_, event, _)| {
            let data: serde_json::Value = event.data_as().expect("JSON data");
            data["cents"].as_u64().expect("cents")
        })
        .collect()
}

/// Every message of the relay's stream, in stream order: its event id and
/// the log position it carries.
///
/// # Panics
///
/// When the stream cannot be read, or a message lacks its headers.
pub async fn stream_contents(jetstream: &Context, prefix: &str) -> Vec<(String, Position)> {
    // A cluster that just regained quorum may answer 503 for a while.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (stream, last) = loop {
        let read = match jetstream.get_stream(stream_of(prefix)).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => Ok((info.state.last_sequence, stream)),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        match read {
            Ok((last, stream)) => break (stream, last),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the stream: {error}"),
        }
    };
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = raw_message(&stream, sequence).await;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_else(|| panic!("message {sequence} has no {name}"))
        };
        let position = header(POSITION_HEADER).parse().expect("a position");
        messages.push((header("Nats-Msg-Id"), position));
    }
    messages
}

/// How many messages the relay's stream holds; 0 while the server does
/// not answer.
pub async fn stored_count(jetstream: &Context, prefix: &str) -> u64 {
    match jetstream.get_stream(stream_of(prefix)).await {
        Ok(stream) => stream.cached_info().state.messages,
        Err(_) => 0,
    }
}

/// How the stream's messages differ from the selected events of the log,
/// in log order: events missing, events stored twice, and messages stored
/// after one of a later log position.
pub fn differences(stored: &[(String, Position)], selected: &[String]) -> (usize, usize, usize) {
    let mut seen = HashSet::new();
    let doubled = stored.iter().filter(|(id, _)| !seen.insert(id)).count();
    let missing = selected.iter().filter(|id| !seen.contains(id)).count();
    let reordered = stored
        .windows(2)
        .filter(|pair| pair[1].1 <= pair[0].1)
        .count();
    (missing, doubled, reordered)
}

/// The ids of the events the bank's publication selects (openings and
/// withdrawals), in log order.
///
/// # Panics
///
/// When the log cannot be read.
pub async fn selected_ids(store: &PostgresEventStore) -> Vec<String> {
    use cqrskit::{EventStore, LogFilter};
    store
        .read_log(
            Position::START,
            &LogFilter::event_types(["AccountOpened", "WithdrawalMade"]),
            100_000,
        )
        .await
        .expect("the log")
        .iter()
        .map(|event| event.event_id.to_string())
        .collect()
}

/// Waits until the relay's runner has published every selected event.
///
/// # Panics
///
/// When it has not within `within`, naming `after`.
pub async fn until_relayed<P>(
    runner: &ProjectionRunner<P>,
    within: std::time::Duration,
    after: &str,
) where
    P: cqrskit::Projector<cqrskit::postgres::sqlx::PgConnection> + ?Sized + 'static,
{
    let deadline = tokio::time::Instant::now() + within;
    while runner.lag().await.expect("lag").events > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up within {within:?} {after}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
