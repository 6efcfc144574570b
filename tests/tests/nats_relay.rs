//! The relay from the global log to JetStream, against a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::nats::{
    PrivateNats, PublicAccountEvents, RecordWithdrawals, connect, jetstream, relay_to_the_end,
    stream_of, unique,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{CloudEvent, Consumer, ConsumerOptions, ContentMode, Relay, RelayOptions};
use cqrskit::postgres::testing::caught_up;
use cqrskit::postgres::{
    FailurePolicy, PostgresEventStore, ProjectionRunner, RunnerOptions, slice_of,
};
use cqrskit::{CommandPipeline, EventStore, LogFilter, Position, StreamId};

/// Opens two accounts and moves money: six events, of which the publication
/// selects the two openings and the two withdrawals.
async fn some_banking(store: &PostgresEventStore) {
    banking(store, &["a", "b"]).await;
}

/// Opens each account, deposits 100 and withdraws 30: three events each.
async fn banking(store: &PostgresEventStore, ids: &[&str]) {
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
    let mut stream = jetstream
        .get_stream(stream_of(prefix))
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
            let slice = slice_of(&stored.stream);
            assert_eq!(subject, &format!("{prefix}.account.{token}.{slice}"));
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
    let slice = |id: &str| slice_of(&StreamId::new("account", id));
    let wanted = slice(&ids[0]);
    let in_slice: Vec<&String> = ids.iter().filter(|id| slice(id) == wanted).collect();
    assert!(
        in_slice.len() < ids.len(),
        "the accounts span several slices"
    );

    let mut options = ConsumerOptions::new(stream_of(&prefix), unique("slice"));
    options.filter_subject = format!("{prefix}.*.*.{wanted}");
    let consumer = Consumer::new(
        db.store.clone(),
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

/// How long a relay's lease lasts in the process tests: a killed relay's
/// lapses quickly.
const LEASE_MS: u64 = 1500;

/// A relay process, killed with SIGKILL when dropped so that a failing test
/// leaves none behind.
struct RelayProcess(std::process::Child);

impl RelayProcess {
    fn start(db: &TestStore, prefix: &str, hold_after_publish: bool) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nats_relay"));
        command
            .env("DATABASE_URL", cqrs_tests::postgres::database_url())
            .env("SCHEMA", &db.schema)
            .env("NATS_URL", cqrs_tests::nats::nats_url())
            .env("PREFIX", prefix)
            .env("LEASE_MS", LEASE_MS.to_string())
            .stdout(std::process::Stdio::piped());
        if hold_after_publish {
            command.env("HOLD_AFTER_PUBLISH", "1");
        }
        Self(command.spawn().expect("start a relay process"))
    }

    /// Waits until the process prints `line`.
    fn wait_for(&mut self, line: &str) {
        use std::io::BufRead;
        let stdout = self.0.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for printed in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = sender.send(printed);
            }
        });
        loop {
            let printed = receiver
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the relay process never printed `{line}`"));
            if printed == line {
                return;
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A relay in the parent process, under the same name as the one killed:
/// it gets the lease once the killed one's lapses.
async fn successor(
    db: &TestStore,
    jetstream: &Context,
    prefix: &str,
) -> ProjectionRunner<Relay<PublicAccountEvents>> {
    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(relay(jetstream, prefix, ContentMode::Structured)),
    )
    .with_options(RunnerOptions {
        lease_duration: Duration::from_millis(LEASE_MS),
        ..RunnerOptions::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !runner.acquire_lease().await.expect("lease") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed relay's lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runner
}

async fn message_count(jetstream: &Context, prefix: &str) -> u64 {
    let mut stream = jetstream
        .get_stream(stream_of(prefix))
        .await
        .expect("the stream");
    stream.info().await.expect("info").state.messages
}

/// The relay is killed (SIGKILL) after JetStream acknowledged its batch and
/// before its checkpoint committed: its successor publishes the batch again,
/// and JetStream, recognising the message ids, stores none of it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_the_acks_and_its_checkpoint_delivers_nothing_twice() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    some_banking(&db.store).await;
    cqrs_tests::scenarios::settled(&db.shared(), 6).await;
    let prefix = unique("bank");

    let mut process = RelayProcess::start(&db, &prefix, true);
    process.wait_for("published");
    assert_eq!(
        message_count(&jetstream, &prefix).await,
        4,
        "the batch reached JetStream"
    );
    process.kill();

    let runner = successor(&db, &jetstream, &prefix).await;
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        Position::START
    );
    assert_eq!(
        caught_up(&runner).await,
        4,
        "the successor relayed the batch again"
    );
    assert_eq!(
        message_count(&jetstream, &prefix).await,
        4,
        "and JetStream dropped the copies"
    );

    // Later events go out once, after the others.
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    accounts
        .execute("a", Withdraw { amount: 5 })
        .await
        .expect("withdraw");
    caught_up(&runner).await;
    let messages = published(&jetstream, &prefix).await;
    assert_eq!(messages.len(), 5);
    let ids: std::collections::HashSet<_> =
        messages.iter().map(|(_, event, _)| &event.id).collect();
    assert_eq!(ids.len(), 5, "each event once");
    runner.release_lease().await.expect("release");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// The relay's NATS server is killed (SIGKILL) and started again while
/// events keep coming: the relay's publishes fail, the runner retries them,
/// and in the end JetStream holds every selected event once, each account's
/// in version order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_and_restarted_under_the_relay_loses_and_doubles_nothing() {
    let db = TestStore::new().await;
    let mut server = PrivateNats::start().await;
    let jetstream = cqrskit::nats::async_nats::jetstream::new(connect(&server.url()).await);
    let prefix = unique("bank");
    let runner = Arc::new(
        ProjectionRunner::new(
            db.store.clone(),
            Arc::new(relay(&jetstream, &prefix, ContentMode::Binary)),
        )
        .with_options(RunnerOptions {
            poll_interval: Duration::from_millis(50),
            failure: FailurePolicy {
                max_attempts: 100,
                max_backoff: Duration::from_millis(500),
                ..FailurePolicy::default()
            },
            ..RunnerOptions::default()
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // Ten accounts, each opened and given three withdrawals (40 selected
    // events), the server killed after the first withdrawals and started
    // again after the second.
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    for round in 0..4 {
        for account in 0..10 {
            let id = format!("acc-{account}");
            if round == 0 {
                let owner = id.clone();
                accounts
                    .execute(&id, OpenAccount { owner })
                    .await
                    .expect("open");
                accounts
                    .execute(&id, Deposit { amount: 100 })
                    .await
                    .expect("deposit");
            } else {
                accounts
                    .execute(&id, Withdraw { amount: 1 })
                    .await
                    .expect("withdraw");
            }
        }
        // Down after round 1; round 2's events come while it is.
        if round == 1 {
            server.kill();
        }
        if round == 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.resume().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while message_count(&jetstream, &prefix).await < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "JetStream holds {} of 40 events after 60 s",
            message_count(&jetstream, &prefix).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    running
        .await
        .expect("join")
        .expect("the relay ran without giving up");

    let messages = published(&jetstream, &prefix).await;
    assert_eq!(messages.len(), 40, "nothing doubled");
    let mut last_version = std::collections::HashMap::new();
    for (_, event, _) in &messages {
        let account = event.subject.clone().expect("a subject");
        let version: u64 = event
            .extension("streamversion")
            .and_then(|version| version.parse().ok())
            .expect("a stream version");
        let previous = last_version.insert(account.clone(), version);
        assert!(
            previous.is_none_or(|previous| previous < version),
            "{account}: version {version} after {previous:?}"
        );
    }
    assert_eq!(last_version.len(), 10);
    db.drop_schema().await;
}

/// Every withdrawal, as `bank.money.withdrawn.v1` with its amount; the
/// publication refuses the withdrawal of `refuse` cents.
struct Withdrawals {
    refuse: Option<u64>,
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
        Ok(Some(cqrskit::nats::Outgoing::new(
            "bank.money.withdrawn.v1",
            &serde_json::json!({ "cents": withdrawal.amount }),
        )?))
    }
}

/// Thirty withdrawals of 1 to 30 cents from one account, in that order.
async fn thirty_withdrawals(db: &TestStore) {
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
    cqrs_tests::scenarios::settled(&db.shared(), 32).await;
}

/// A relay of `Withdrawals` in batches of ten, stopping at the first
/// event it cannot publish.
fn withdrawal_relay(
    db: &TestStore,
    jetstream: &Context,
    prefix: &str,
    refuse: Option<u64>,
) -> ProjectionRunner<Relay<Withdrawals>> {
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        Withdrawals { refuse },
        RelayOptions::new(prefix, "/bank"),
    );
    ProjectionRunner::new(db.store.clone(), Arc::new(relay)).with_options(RunnerOptions {
        batch_size: 10,
        failure: FailurePolicy {
            max_attempts: 1,
            ..FailurePolicy::default()
        },
        ..RunnerOptions::default()
    })
}

/// The amounts of the messages in the relay's stream, in stream order.
async fn published_cents(jetstream: &Context, prefix: &str) -> Vec<u64> {
    published(jetstream, prefix)
        .await
        .iter()
        .map(|(_, event, _)| {
            let data: serde_json::Value = event.data_as().expect("JSON data");
            data["cents"].as_u64().expect("cents")
        })
        .collect()
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
    let runner = withdrawal_relay(&db, &jetstream, &prefix, None);
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

/// A relay that stops at an event it cannot publish has published nothing
/// after it, whether the event is in the batch being applied (nothing goes
/// ahead of a batch that did not go out whole) or in the batch read ahead
/// (sending ahead stops at it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_at_an_event_has_published_nothing_after_it() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    for refuse in [5, 15] {
        let prefix = unique("bank");
        let runner = withdrawal_relay(&db, &jetstream, &prefix, Some(refuse));
        assert!(runner.acquire_lease().await.expect("lease"));
        let stopped = runner.catch_up().await.expect_err("stopped");
        assert!(
            matches!(stopped, cqrskit::postgres::RunnerError::Stopped { .. }),
            "{stopped}"
        );
        // Longer than a look-ahead waits for its batch to go out.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            published_cents(&jetstream, &prefix).await,
            (1..refuse).collect::<Vec<_>>(),
            "refusing {refuse} cents"
        );
        runner.release_lease().await.expect("release");
        jetstream
            .delete_stream(stream_of(&prefix))
            .await
            .expect("delete the stream");
    }
    db.drop_schema().await;
}
