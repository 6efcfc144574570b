//! The scenarios: each takes a fresh, empty store and panics when the store
//! breaks the [`EventStore`] contract.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_examples::bank_account::{
    AccountCommand, AccountError, AccountEvent, AccountOpened, BankAccount, Deposit, DepositMade,
    OpenAccount, Withdraw, WithdrawalMade,
};
use cqrskit::{
    Aggregate, BoxError, CommandError, CommandPipeline, Conflict, DomainEvent, EventEnvelope,
    EventStore, ExpectedVersion, LogFilter, Metadata, Position, RetryPolicy, Snapshot,
    SnapshotPolicy, StoreError, catch_up, projector,
};
use uuid::Uuid;

use crate::fixtures::{event, json, stream, ticks};

mod consistency;
mod creation;
mod idempotent_commands;
mod round_trip;

pub use consistency::*;
pub use creation::*;
pub use idempotent_commands::*;
pub use round_trip::*;

/// A store as the scenarios receive it.
pub type Store = Arc<dyn EventStore>;

/// The bank-account pipeline the scenarios drive.
pub type Accounts = CommandPipeline<BankAccount>;

/// Waits until the global log shows `expected` events in all.
///
/// A store may show a committed event to log readers only once every
/// transaction older than its own has ended (that is how PostgreSQL keeps
/// tailing gap-safe), so a scenario that reads the log right after writing
/// waits for it to settle first.
pub async fn settled(store: &Store, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let visible = store
            .read_log(Position::START, &LogFilter::all(), expected + 1)
            .await
            .expect("read the log")
            .len();
        if visible >= expected {
            assert_eq!(visible, expected, "more events in the log than written");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log shows {visible} of {expected} events after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Parses JSON text for comparison by value: stores may reformat it.
fn value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("stored JSON parses")
}

async fn must_conflict(store: &Store, id: &str, expected: ExpectedVersion, actual: u64) {
    match store.append(&stream(id), expected, ticks(1)).await {
        Err(StoreError::Conflict(conflict)) => assert_eq!(
            conflict,
            Conflict {
                stream: stream(id),
                expected,
                actual
            }
        ),
        other => panic!("expected a conflict at {expected}, got {other:?}"),
    }
}

/// Versions start at 1 and follow each other with no holes.
pub async fn append_to_a_new_stream_numbers_versions_from_one(store: Store) {
    let first = store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("append to a new stream");
    assert_eq!(first.stream_version, 2);
    assert_eq!(
        first.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(!first.already_stored);

    let second = store
        .append(&stream("a"), ExpectedVersion::Exact(2), ticks(3))
        .await
        .expect("append at the version seen");
    assert_eq!(
        second.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(
        store.stream_version(&stream("a")).await.expect("version"),
        5
    );
    assert_eq!(
        store
            .stream_version(&stream("nobody"))
            .await
            .expect("version"),
        0
    );
}

/// `NoStream` fails once the stream has an event, reporting its version.
pub async fn no_stream_conflicts_once_the_stream_exists(store: Store) {
    store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(3))
        .await
        .expect("first append");
    must_conflict(&store, "a", ExpectedVersion::NoStream, 3).await;
}

/// `StreamExists` fails on a stream with no event.
pub async fn stream_exists_conflicts_on_an_empty_stream(store: Store) {
    must_conflict(&store, "a", ExpectedVersion::StreamExists, 0).await;
    store
        .append(&stream("a"), ExpectedVersion::Any, ticks(1))
        .await
        .expect("create");
    store
        .append(&stream("a"), ExpectedVersion::StreamExists, ticks(1))
        .await
        .expect("stream exists now");
}

/// `Exact(n)` fails when the stream is behind or ahead of `n`.
pub async fn exact_version_conflicts_unless_it_matches(store: Store) {
    must_conflict(&store, "a", ExpectedVersion::Exact(1), 0).await;
    store
        .append(&stream("a"), ExpectedVersion::Exact(0), ticks(2))
        .await
        .expect("Exact(0) on an empty stream");
    must_conflict(&store, "a", ExpectedVersion::Exact(1), 2).await;
    must_conflict(&store, "a", ExpectedVersion::Exact(3), 2).await;
    store
        .append(&stream("a"), ExpectedVersion::Exact(2), ticks(1))
        .await
        .expect("Exact(2) at version 2");
}

/// `Any` appends whatever the stream holds.
pub async fn any_version_always_appends(store: Store) {
    for expected_version in 1..=3 {
        let result = store
            .append(&stream("a"), ExpectedVersion::Any, ticks(1))
            .await
            .expect("Any never conflicts");
        assert_eq!(result.stream_version, expected_version);
    }
}

/// A refused append leaves the stream and the log exactly as they were.
pub async fn a_conflict_writes_nothing(store: Store) {
    store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("first append");
    let refused = ticks(3);
    let refused_id = refused[0].event_id;
    let result = store
        .append(&stream("a"), ExpectedVersion::Exact(1), refused)
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");

    let events = store.read_stream(&stream("a"), 1, 100).await.expect("read");
    assert_eq!(events.len(), 2);
    settled(&store, 2).await;
    let log = store
        .read_log(Position::START, &LogFilter::all(), 100)
        .await
        .expect("log");
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.event_id != refused_id));
}

/// Appending nothing still checks the expected version, and stores nothing.
pub async fn empty_append_checks_the_expected_version_only(store: Store) {
    let result = store
        .append(&stream("a"), ExpectedVersion::NoStream, Vec::new())
        .await
        .expect("nothing to append to nothing");
    assert_eq!((result.stream_version, result.events.len()), (0, 0));
    let result = store
        .append(&stream("a"), ExpectedVersion::StreamExists, Vec::new())
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let log = store
        .read_log(Position::START, &LogFilter::all(), 10)
        .await
        .expect("log");
    assert!(log.is_empty());
}

/// Events appended one after another, to different streams, get strictly
/// increasing positions and sequence numbers, and the log returns them in
/// that order.
pub async fn global_positions_strictly_increase_across_streams(store: Store) {
    let mut appended = Vec::new();
    for round in 0..4 {
        for id in ["a", "b", "c"] {
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(round * 2)
            };
            let result = store
                .append(&stream(id), expected, ticks(2))
                .await
                .expect("append");
            appended.extend(result.events.into_iter().map(|e| (e.event_id, e.position)));
        }
    }
    settled(&store, appended.len()).await;
    for pair in appended.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "positions {} then {}",
            pair[0].1,
            pair[1].1
        );
        assert!(pair[0].1.sequence < pair[1].1.sequence);
    }
    let log = store
        .read_log(Position::START, &LogFilter::all(), 1000)
        .await
        .expect("log");
    let read: Vec<_> = log.iter().map(|e| (e.event_id, e.position)).collect();
    assert_eq!(read, appended);
}

/// A stream is read from any version, in version order, `limit` at a time.
pub async fn read_stream_reads_from_a_version_in_batches(store: Store) {
    store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(7))
        .await
        .expect("append");
    store
        .append(&stream("b"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("append");
    let batch = store.read_stream(&stream("a"), 3, 2).await.expect("read");
    assert_eq!(batch.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(value(batch[0].payload.get()), value(r#"{"n":2}"#));
    let rest = store.read_stream(&stream("a"), 5, 100).await.expect("read");
    assert_eq!(
        rest.iter().map(|e| e.version).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert!(rest.iter().all(|e| e.stream == stream("a")));
    assert!(
        store
            .read_stream(&stream("a"), 8, 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream(&stream("none"), 1, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

/// Reading the log after the last position of each page reads everything once.
pub async fn read_log_pages_by_position(store: Store) {
    for id in ["a", "b", "c"] {
        store
            .append(&stream(id), ExpectedVersion::NoStream, ticks(3))
            .await
            .expect("append");
    }
    settled(&store, 9).await;
    let mut seen = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store
            .read_log(after, &LogFilter::all(), 4)
            .await
            .expect("page");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = last.position;
        seen.extend(page.into_iter().map(|e| e.event_id));
    }
    assert_eq!(seen.len(), 9);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 9);
}

/// The log keeps only the event types and aggregate types asked for.
pub async fn read_log_filters_by_event_and_aggregate_type(store: Store) {
    let other_aggregate = cqrskit::StreamId::new("gadget", "g");
    store
        .append(
            &stream("a"),
            ExpectedVersion::NoStream,
            vec![
                event("Opened", "{}"),
                event("Ticked", "1"),
                event("Closed", "{}"),
            ],
        )
        .await
        .expect("append");
    store
        .append(
            &other_aggregate,
            ExpectedVersion::NoStream,
            vec![event("Ticked", "2")],
        )
        .await
        .expect("append");

    settled(&store, 4).await;
    let types = |events: Vec<cqrskit::StoredEvent>| {
        events
            .into_iter()
            .map(|e| format!("{}:{}", e.stream.aggregate_type, e.event_type))
            .collect::<Vec<_>>()
    };
    let ticked = store
        .read_log(Position::START, &LogFilter::event_types(["Ticked"]), 10)
        .await
        .expect("filtered");
    assert_eq!(types(ticked), ["thing:Ticked", "gadget:Ticked"]);
    let two_types = store
        .read_log(
            Position::START,
            &LogFilter::event_types(["Closed", "Opened"]),
            10,
        )
        .await
        .expect("filtered");
    assert_eq!(types(two_types), ["thing:Opened", "thing:Closed"]);
    let gadget_ticks = store
        .read_log(
            Position::START,
            &LogFilter::event_types(["Ticked"]).and_aggregate_types(["gadget"]),
            10,
        )
        .await
        .expect("filtered");
    assert_eq!(types(gadget_ticks), ["gadget:Ticked"]);
    // The limit counts matching events, not scanned ones.
    let first_tick = store
        .read_log(Position::START, &LogFilter::event_types(["Ticked"]), 1)
        .await
        .expect("filtered");
    assert_eq!(types(first_tick), ["thing:Ticked"]);
}

/// A retried append (same ids, same content) succeeds again without writing,
/// and reports where the events were first stored.
pub async fn reappending_the_same_events_is_an_idempotent_success(store: Store) {
    let batch = ticks(3);
    let first = store
        .append(&stream("a"), ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("first append");
    store
        .append(&stream("a"), ExpectedVersion::Exact(3), ticks(1))
        .await
        .expect("someone else appends");
    // The retry carries the expectation of the lost first attempt; it must not conflict.
    let retry = store
        .append(&stream("a"), ExpectedVersion::NoStream, batch)
        .await
        .expect("retry of a stored append");
    assert!(retry.already_stored);
    assert_eq!(retry.events, first.events);
    assert_eq!(
        store.stream_version(&stream("a")).await.expect("version"),
        4
    );
}

/// An id already stored, with other content, is refused and nothing is written.
pub async fn reusing_an_event_id_with_other_content_is_refused(store: Store) {
    let original = event("Ticked", r#"{"n":1}"#);
    store
        .append(
            &stream("a"),
            ExpectedVersion::NoStream,
            vec![original.clone()],
        )
        .await
        .expect("append");
    let mut altered = original.clone();
    altered.payload = json(r#"{"n":2}"#);
    let result = store
        .append(&stream("a"), ExpectedVersion::Any, vec![altered])
        .await;
    match result {
        Err(StoreError::EventIdReused { event_id, .. }) => assert_eq!(event_id, original.event_id),
        other => panic!("expected EventIdReused, got {other:?}"),
    }
    // A new event followed by a stored one is refused too, as a whole.
    let mixed = vec![event("Ticked", "3"), original.clone()];
    let result = store
        .append(&stream("a"), ExpectedVersion::Any, mixed)
        .await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "{result:?}"
    );
    // The same id in another stream is refused.
    let result = store
        .append(&stream("b"), ExpectedVersion::Any, vec![original])
        .await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "{result:?}"
    );
    settled(&store, 1).await;
}

/// Two events with one id in the same batch are refused before anything is written.
pub async fn duplicate_ids_within_one_batch_are_refused(store: Store) {
    let one = event("Ticked", "1");
    let result = store
        .append(
            &stream("a"),
            ExpectedVersion::NoStream,
            vec![one.clone(), one],
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "{result:?}"
    );
    assert_eq!(
        store.stream_version(&stream("a")).await.expect("version"),
        0
    );
}

/// Metadata, type, schema version and payload come back as written.
pub async fn metadata_round_trips(store: Store) {
    let mut written = event(
        "Renamed",
        r#"{"name":"x","tags":["a","b"],"nested":{"k":null}}"#,
    );
    written.event_version = 3;
    written.metadata = Metadata::new()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_entry("user", "alice")
        .with_entry("tenant", "t-1");
    store
        .append(
            &stream("a"),
            ExpectedVersion::NoStream,
            vec![written.clone()],
        )
        .await
        .expect("append");
    let read = store.read_stream(&stream("a"), 1, 1).await.expect("read");
    let stored = &read[0];
    assert!(written.same_as(stored), "{written:?} vs {stored:?}");
    assert_eq!(stored.metadata, written.metadata);
    assert_eq!(stored.event_version, 3);
    let value: serde_json::Value = serde_json::from_str(stored.payload.get()).expect("json");
    assert_eq!(value["tags"][1], "b");
}

/// Loading returns the newest snapshot; saving an older one changes nothing.
pub async fn snapshots_keep_only_the_newest(store: Store) {
    assert!(
        store
            .load_snapshot(&stream("a"))
            .await
            .expect("load")
            .is_none()
    );
    let snapshot = |version: u64| Snapshot {
        stream: stream("a"),
        version,
        schema_version: 1,
        state: json(&format!(r#"{{"at":{version}}}"#)),
        taken_at: chrono::Utc::now(),
    };
    store.save_snapshot(snapshot(10)).await.expect("save");
    store.save_snapshot(snapshot(20)).await.expect("save");
    store.save_snapshot(snapshot(15)).await.expect("save older");
    let loaded = store
        .load_snapshot(&stream("a"))
        .await
        .expect("load")
        .expect("some");
    assert_eq!(loaded.version, 20);
    assert_eq!(value(loaded.state.get()), value(r#"{"at":20}"#));
    assert!(
        store
            .load_snapshot(&stream("b"))
            .await
            .expect("load")
            .is_none()
    );
}

/// A snapshot given with an append is saved only when the append stores
/// the batch and the snapshot is of that stream at the version the batch
/// ends on; whatever the expectation, and never when the append fails.
pub async fn a_snapshot_rides_only_with_the_append_it_describes(store: Store) {
    let snapshot = |id: &str, version: u64| Snapshot {
        stream: stream(id),
        version,
        schema_version: 1,
        state: json(&format!(r#"{{"at":{version}}}"#)),
        taken_at: chrono::Utc::now(),
    };
    let saved = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .load_snapshot(&stream(id))
                .await
                .expect("load")
                .map(|snapshot| snapshot.version)
        }
    };
    let a = stream("a");
    store
        .append_with_snapshot(&a, ExpectedVersion::NoStream, ticks(2), snapshot("a", 2))
        .await
        .expect("append");
    assert_eq!(
        saved("a").await,
        Some(2),
        "saved with the batch ending at 2"
    );
    store
        .append_with_snapshot(&a, ExpectedVersion::Exact(2), ticks(1), snapshot("a", 7))
        .await
        .expect("append");
    assert_eq!(
        saved("a").await,
        Some(2),
        "a snapshot at 7 after a batch ending at 3"
    );
    match store
        .append_with_snapshot(&a, ExpectedVersion::Exact(1), ticks(1), snapshot("a", 2))
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    store
        .append_with_snapshot(&a, ExpectedVersion::Any, ticks(1), snapshot("a", 4))
        .await
        .expect("append");
    assert_eq!(saved("a").await, Some(4), "saved after an `Any` append");
    store
        .append_with_snapshot(&a, ExpectedVersion::Exact(4), ticks(1), snapshot("b", 5))
        .await
        .expect("append");
    assert_eq!(saved("a").await, Some(4));
    assert_eq!(saved("b").await, None, "a snapshot of another stream");
    assert_eq!(store.stream_version(&a).await.expect("version"), 5);
}

/// Twenty writers append at the same expected version: per version exactly one
/// wins, the others get the typed conflict, and the stream has no holes.
pub async fn concurrent_appends_at_the_same_version_let_exactly_one_win(store: Store) {
    const WRITERS: usize = 20;
    const ROUNDS: u64 = 5;
    for version in 0..ROUNDS {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append(&stream("hot"), ExpectedVersion::Exact(version), ticks(1))
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(result) => {
                    winners += 1;
                    assert_eq!(result.stream_version, version + 1);
                }
                Err(StoreError::Conflict(conflict)) => {
                    assert_eq!(conflict.expected, ExpectedVersion::Exact(version));
                    assert_eq!(conflict.actual, version + 1);
                }
                Err(other) => panic!("expected success or conflict, got {other}"),
            }
        }
        assert_eq!(winners, 1, "round {version}");
    }
    let events = store
        .read_stream(&stream("hot"), 1, 100)
        .await
        .expect("read");
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=ROUNDS).collect::<Vec<_>>());
}

/// Writers append to several streams concurrently while a reader tails the
/// global log from its checkpoint: the reader sees every event exactly once,
/// and each stream's events in version order.
pub async fn tailing_reader_sees_every_event_exactly_once_under_concurrent_writers(store: Store) {
    const WRITERS: usize = 6;
    const APPENDS: usize = 25;
    const BATCH: usize = 2;
    let total = WRITERS * APPENDS * BATCH;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let id = format!("w{}", writer % 3); // streams shared by two writers each
            for _ in 0..APPENDS {
                store
                    .append(&stream(&id), ExpectedVersion::Any, ticks(BATCH))
                    .await
                    .expect("append");
                tokio::task::yield_now().await;
            }
        }));
    }

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut checkpoint = Position::START;
            let mut seen = HashSet::new();
            let mut last_version: BTreeMap<String, u64> = BTreeMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while seen.len() < total {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "reader saw {} of {total}",
                    seen.len()
                );
                let batch = store
                    .read_log(checkpoint, &LogFilter::all(), 7)
                    .await
                    .expect("read");
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                for event in batch {
                    assert!(event.position > checkpoint, "log went backwards");
                    checkpoint = event.position;
                    assert!(
                        seen.insert(event.event_id),
                        "event {} read twice",
                        event.event_id
                    );
                    let last = last_version
                        .entry(event.stream.aggregate_id.clone())
                        .or_default();
                    assert_eq!(
                        event.version,
                        *last + 1,
                        "stream {} out of order",
                        event.stream
                    );
                    *last = event.version;
                }
            }
            seen.len()
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    assert_eq!(reader.await.expect("reader"), total);
}

/// The bank account story from the guide: 100 in, 50 out, 25 in leaves 75.
pub async fn pipeline_runs_the_bank_account_story(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let open = AccountCommand::Open(OpenAccount {
        owner: "Alice".into(),
    });
    accounts.execute("acc", open).await.expect("open");
    for command in [
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        accounts.execute("acc", command).await.expect("accepted");
    }
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!((loaded.state.balance, loaded.version), (75, 4));
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 1, 10)
        .await
        .expect("read");
    let types: Vec<_> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "DepositMade",
            "WithdrawalMade",
            "DepositMade"
        ]
    );
}

/// A command the aggregate refuses surfaces its domain error and stores nothing.
pub async fn rejected_command_stores_nothing(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let result = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 5 }))
        .await;
    assert!(
        matches!(result, Err(CommandError::Rejected(AccountError::NotOpen))),
        "{result:?}"
    );
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    let result = accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 1 }))
        .await;
    match result {
        Err(CommandError::Rejected(error)) => assert_eq!(
            error,
            AccountError::InsufficientFunds {
                balance: 0,
                requested: 1
            }
        ),
        other => panic!("expected an overdraft refusal, got {other:?}"),
    }
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        1
    );
}

/// Opens account `id` for owner "A" and deposits each amount in turn.
pub async fn open_with_deposits(accounts: &Accounts, id: &str, amounts: &[u64]) {
    accounts
        .execute(id, AccountCommand::Open(OpenAccount { owner: "A".into() }))
        .await
        .expect("open");
    for &amount in amounts {
        accounts
            .execute(id, AccountCommand::Deposit(Deposit { amount }))
            .await
            .expect("deposit");
    }
}

fn fold(events: &[AccountEvent]) -> BankAccount {
    let mut state = BankAccount::default();
    for event in events {
        state.apply(event);
    }
    state
}

async fn stored_account_events(store: &Store, id: &str) -> Vec<AccountEvent> {
    store
        .read_stream(&Accounts::stream_id(id), 1, 10_000)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.decode::<AccountEvent>().expect("decode").payload)
        .collect()
}

/// With snapshots every 3 events, loading (snapshot + later events) gives the
/// state a full replay gives, and the snapshot is really used.
pub async fn snapshot_plus_events_rebuilds_the_same_state_as_full_replay(store: Store) {
    let accounts = Accounts::new(store.clone(), ()).with_snapshots(SnapshotPolicy::Every(3));
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    for amount in 1..=10 {
        accounts
            .execute("acc", AccountCommand::Deposit(Deposit { amount }))
            .await
            .expect("deposit");
    }
    accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 7 }))
        .await
        .expect("withdraw");

    let snapshot = store
        .load_snapshot(&Accounts::stream_id("acc"))
        .await
        .expect("load")
        .expect("a snapshot was taken");
    assert_eq!(snapshot.version, 12);
    let replayed = fold(&stored_account_events(&store, "acc").await);
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!(loaded.state, replayed);
    assert_eq!(loaded.version, 12);

    // Prove the load starts from the snapshot: a doctored snapshot shows through.
    let mut doctored = snapshot.clone();
    doctored.version = 12;
    doctored.state = json(r#"{"owner":"A","balance":1000000}"#);
    store.save_snapshot(doctored).await.expect("save");
    assert_eq!(
        accounts.load("acc").await.expect("load").state.balance,
        1_000_000
    );
}

/// A snapshot the aggregate cannot use (its state no longer deserializes, or
/// it was taken with another snapshot schema version) is passed over: the
/// load replays the whole stream and gets the true state.
pub async fn an_unusable_snapshot_falls_back_to_a_full_replay(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[5, 7]).await;
    let doctored = |state: &str, schema_version: u32| Snapshot {
        stream: Accounts::stream_id("acc"),
        version: 2,
        schema_version,
        state: json(state),
        taken_at: chrono::Utc::now(),
    };
    for (state, schema_version, why) in [
        (
            r#""not a state""#,
            BankAccount::SNAPSHOT_VERSION,
            "does not deserialize",
        ),
        (
            r#"{"owner":"A","balance":1000000}"#,
            BankAccount::SNAPSHOT_VERSION + 1,
            "has another schema version",
        ),
    ] {
        // Saving moves the snapshot forward only; start each case afresh.
        let fresh = Snapshot {
            version: 3,
            ..doctored(state, schema_version)
        };
        store.save_snapshot(fresh).await.expect("save");
        let loaded = accounts.load("acc").await.expect("load");
        assert_eq!(
            (loaded.version, loaded.state.balance),
            (3, 12),
            "a snapshot that {why}"
        );
        let past = accounts.load_at("acc", 2).await.expect("load_at");
        assert_eq!(past.state.balance, 5, "load_at with a snapshot that {why}");
    }
}

/// `load_from_events` replays every event and takes no snapshot, even a
/// usable one that disagrees with the events (one written by a buggy
/// version): the way to check a snapshot, or to load past one.
pub async fn loading_from_events_ignores_the_snapshot(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[5, 7]).await;
    store
        .save_snapshot(Snapshot {
            stream: Accounts::stream_id("acc"),
            version: 3,
            schema_version: BankAccount::SNAPSHOT_VERSION,
            state: json(r#"{"owner":"A","balance":1000000}"#),
            taken_at: chrono::Utc::now(),
        })
        .await
        .expect("save");
    let from_snapshot = accounts.load("acc").await.expect("load");
    assert_eq!(
        from_snapshot.state.balance, 1_000_000,
        "load takes the snapshot"
    );
    let from_events = accounts.load_from_events("acc").await.expect("load");
    assert_eq!((from_events.version, from_events.state.balance), (3, 12));
}

/// Time travel: the state right after version N, whatever came later.
pub async fn load_at_returns_the_state_as_of_a_version(store: Store) {
    let accounts = Accounts::new(store.clone(), ()).with_snapshots(SnapshotPolicy::Every(2));
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    for command in [
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        accounts.execute("acc", command).await.expect("accepted");
    }
    let balances: Vec<u64> = {
        let mut balances = Vec::new();
        for version in 0..=4 {
            let loaded = accounts.load_at("acc", version).await.expect("load_at");
            assert_eq!(loaded.version, version);
            balances.push(loaded.state.balance);
        }
        balances
    };
    assert_eq!(balances, [0, 0, 100, 50, 75]);
    assert!(
        accounts
            .load_at("acc", 0)
            .await
            .expect("v0")
            .state
            .owner
            .is_none()
    );
    match accounts.load_at("acc", 5).await {
        Err(StoreError::VersionNotFound {
            requested, current, ..
        }) => assert_eq!((requested, current), (5, 4)),
        other => panic!("expected VersionNotFound, got {other:?}"),
    }
}

/// `load_as_of` gives the state after the events recorded at or before a
/// time: before the first event, the default state; at each event's
/// recording time, the state right after it; in between, the same.
pub async fn load_as_of_returns_the_state_at_a_time(store: Store) {
    let accounts = Accounts::new(store.clone(), ()).with_snapshots(SnapshotPolicy::Every(2));
    let mut times = Vec::new();
    for command in [
        AccountCommand::Open(OpenAccount { owner: "A".into() }),
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        let outcome = accounts.execute("acc", command).await.expect("accepted");
        times.push(outcome.events[0].recorded_at);
        // Distinct recording times, even at the store's microseconds.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let before = times[0] - chrono::Duration::milliseconds(1);
    let empty = accounts.load_as_of("acc", before).await.expect("as of");
    assert_eq!((empty.version, empty.state.owner), (0, None));
    let mut balances = Vec::new();
    for (index, at) in times.iter().enumerate() {
        let loaded = accounts.load_as_of("acc", *at).await.expect("as of");
        assert_eq!(
            loaded.version,
            index as u64 + 1,
            "as of event {index}'s time"
        );
        let between = *at + chrono::Duration::microseconds(500);
        let later = accounts.load_as_of("acc", between).await.expect("as of");
        assert_eq!(later.version, loaded.version, "between events");
        balances.push(loaded.state.balance);
    }
    assert_eq!(balances, [0, 100, 50, 75]);
    let now = accounts
        .load_as_of("acc", chrono::Utc::now())
        .await
        .expect("now");
    assert_eq!(now.version, 4);
}

/// Correlation and causation ids and free-form entries given with a command
/// reach every event it stores; without them, the command's events share a
/// fresh correlation id.
pub async fn command_metadata_reaches_every_stored_event(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let correlation = Uuid::now_v7();
    let cause = Uuid::now_v7();
    let given = Metadata::new()
        .with_correlation_id(correlation)
        .with_causation_id(cause)
        .with_entry("user", "alice");
    let outcome = accounts
        .execute_with(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
            given.clone(),
        )
        .await
        .expect("open");
    assert_eq!(outcome.events[0].metadata, given);
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 1, 1)
        .await
        .expect("read");
    assert_eq!(stored[0].metadata, given);

    // A follow-up caused by that event carries the chain on.
    let follow_up = Metadata::caused_by(&outcome.events[0]);
    accounts
        .execute_with(
            "acc",
            AccountCommand::Deposit(Deposit { amount: 5 }),
            follow_up,
        )
        .await
        .expect("deposit");
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 2, 1)
        .await
        .expect("read");
    assert_eq!(stored[0].metadata.correlation_id, Some(correlation));
    assert_eq!(
        stored[0].metadata.causation_id,
        Some(outcome.events[0].event_id)
    );

    let plain = accounts
        .execute(
            "other",
            AccountCommand::Open(OpenAccount { owner: "B".into() }),
        )
        .await;
    let plain = plain.expect("open");
    let fresh = plain.events[0]
        .metadata
        .correlation_id
        .expect("a correlation id is filled in");
    assert_ne!(fresh, correlation);
}

/// Concurrent withdrawals on one account, with retries on: every command is
/// judged against the newest state, so the balance never goes negative and
/// no deposit is lost.
pub async fn retries_keep_concurrent_withdrawals_within_the_balance(store: Store) {
    let accounts = Arc::new(Accounts::new(store.clone(), ()).with_retry(RetryPolicy::retries(100)));
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 100 }))
        .await
        .expect("deposit");

    let mut tasks = Vec::new();
    for task in 0..20_u64 {
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let command = if task % 4 == 0 {
                AccountCommand::Deposit(Deposit { amount: 10 })
            } else {
                AccountCommand::Withdraw(Withdraw { amount: 15 })
            };
            (command.clone(), accounts.execute("acc", command).await)
        }));
    }
    let mut expected_balance: i64 = 100;
    for task in tasks {
        match task.await.expect("task") {
            (AccountCommand::Deposit(Deposit { amount }), Ok(_)) => {
                expected_balance += amount as i64
            }
            (AccountCommand::Withdraw(Withdraw { amount }), Ok(_)) => {
                expected_balance -= amount as i64
            }
            (_, Err(CommandError::Rejected(AccountError::InsufficientFunds { .. }))) => {}
            (command, Err(error)) => panic!("{command:?} failed: {error}"),
            (command, Ok(_)) => panic!("unexpected command {command:?}"),
        }
    }
    let events = stored_account_events(&store, "acc").await;
    let deposits = events
        .iter()
        .filter(|e| matches!(e, AccountEvent::DepositMade(DepositMade { amount: 10 })))
        .count();
    assert_eq!(deposits, 5, "every deposit is stored");
    let mut balance: i64 = 0;
    for event in &events {
        match event {
            AccountEvent::DepositMade(DepositMade { amount }) => balance += *amount as i64,
            AccountEvent::WithdrawalMade(WithdrawalMade { amount }) => balance -= *amount as i64,
            AccountEvent::AccountOpened(AccountOpened { .. }) => {}
        }
        assert!(balance >= 0, "balance went negative: {balance}");
    }
    assert_eq!(balance, expected_balance);
    assert_eq!(
        accounts.load("acc").await.expect("load").state.balance as i64,
        balance
    );
}

/// A domain whose every command takes a long decision, to let two commands
/// load the same version deterministically.
mod slow {
    use super::*;

    #[derive(Default, serde::Serialize, serde::Deserialize)]
    pub(super) struct Slow;

    pub(super) struct Touch;

    impl cqrskit::Command for Touch {
        fn command_type(&self) -> &'static str {
            "Touch"
        }
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub(super) enum SlowEvent {
        Touched,
    }

    impl DomainEvent for SlowEvent {
        const EVENT_TYPES: &'static [&'static str] = &["Touched"];
        fn event_type(&self) -> &'static str {
            "Touched"
        }
    }

    /// Every handler waits at the barrier, so all of them decide on the same version.
    pub(super) struct Gate(pub(super) tokio::sync::Barrier);

    impl Aggregate for Slow {
        const TYPE: &'static str = "slow";
        type Command = Touch;
        type Event = SlowEvent;
        type Error = std::convert::Infallible;
        type Services = Gate;

        async fn handle(&self, _: &Touch, gate: &Gate) -> Result<Vec<SlowEvent>, Self::Error> {
            gate.0.wait().await;
            Ok(vec![SlowEvent::Touched])
        }

        fn apply(&mut self, _: &SlowEvent) {}
    }
}

/// Without retries, the loser of a race gets the conflict with both versions.
pub async fn conflict_without_retry_is_reported_with_versions(store: Store) {
    let pipeline = Arc::new(CommandPipeline::<slow::Slow>::new(
        store.clone(),
        slow::Gate(tokio::sync::Barrier::new(2)),
    ));
    let first = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.execute("s", slow::Touch).await }
    });
    let second = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.execute("s", slow::Touch).await }
    });
    let results = [first.await.expect("task"), second.await.expect("task")];
    let conflicts: Vec<_> = results
        .iter()
        .filter_map(|result| match result {
            Err(CommandError::Conflict(conflict)) => Some(conflict.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        conflicts,
        [Conflict {
            stream: cqrskit::StreamId::new("slow", "s"),
            expected: ExpectedVersion::NoStream,
            actual: 1
        }]
    );
}

/// A stored payload that no longer matches its event is reported with stream,
/// version and type; nothing is written.
pub async fn undecodable_event_is_reported_with_its_place(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    store
        .append(
            &Accounts::stream_id("acc"),
            ExpectedVersion::NoStream,
            vec![
                event("AccountOpened", r#"{"owner":"A"}"#),
                event("DepositMade", r#"{"amount":"lots"}"#),
            ],
        )
        .await
        .expect("raw append");
    let result = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 1 }))
        .await;
    match result {
        Err(CommandError::Store(StoreError::Decode(error))) => {
            assert_eq!(error.stream, Accounts::stream_id("acc"));
            assert_eq!(
                (error.version, error.event_type.as_str()),
                (2, "DepositMade")
            );
            let message = error.to_string();
            assert!(
                message.contains("account/acc") && message.contains("version 2"),
                "{message}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        2
    );
}

/// An event type the aggregate does not know is reported, never skipped.
pub async fn unknown_event_type_is_reported_with_its_place(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    store
        .append(
            &Accounts::stream_id("acc"),
            ExpectedVersion::NoStream,
            vec![
                event("AccountOpened", r#"{"owner":"A"}"#),
                event("AccountFrozen", "{}"),
            ],
        )
        .await
        .expect("raw append");
    match accounts.load("acc").await {
        Err(StoreError::Decode(error)) => {
            assert_eq!(
                (error.version, error.event_type.as_str()),
                (2, "AccountFrozen")
            );
            assert!(matches!(
                *error.source,
                cqrskit::PayloadError::UnknownEventType { .. }
            ));
            assert!(
                error
                    .to_string()
                    .contains("unknown event type `AccountFrozen`"),
                "{error}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// Records what it saw, and fails on deposits above a limit. It handles
/// deposits only, so the macro declares exactly that type.
struct Picky {
    seen: Mutex<Vec<String>>,
}

#[projector(event = AccountEvent)]
impl Picky {
    #[project]
    fn deposited(
        &self,
        event: &DepositMade,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        if event.amount > 1000 {
            return Err(format!("deposit {} is too large", event.amount).into());
        }
        self.seen
            .lock()
            .expect("lock")
            .push(envelope.event_type.clone());
        Ok(())
    }
}

/// An in-process projector's failure does not undo the stored events; it is
/// reported in the outcome with the event it failed on.
pub async fn projector_failure_is_reported_and_the_events_stay_stored(store: Store) {
    let picky = Arc::new(Picky {
        seen: Mutex::new(Vec::new()),
    });
    let accounts = Accounts::new(store.clone(), ()).with_projector(picky.clone());
    let outcome = accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    assert!(outcome.projector_failures.is_empty());
    let outcome = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 5000 }))
        .await
        .expect("the command itself succeeds");
    assert_eq!(outcome.projector_failures.len(), 1);
    let failure = &outcome.projector_failures[0];
    assert_eq!((failure.projector.as_str(), failure.version), ("picky", 2));
    assert_eq!(failure.event_id, outcome.events[0].event_id);
    assert!(
        failure.to_string().contains("deposit 5000 is too large"),
        "{failure}"
    );
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        2
    );
    // The projector declared DepositMade only: it never saw AccountOpened.
    assert!(picky.seen.lock().expect("lock").is_empty());
}

/// `catch_up` asks the store for the projector's declared types only, and
/// stops at a failing event with the checkpoint before it.
pub async fn catch_up_delivers_only_declared_event_types(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[10, 20]).await;
    accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 5 }))
        .await
        .expect("withdraw");
    accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 2000 }))
        .await
        .expect("deposit");

    settled(&store, 5).await;
    assert_eq!(Picky::EVENT_TYPES, ["DepositMade"]);
    let picky = Picky {
        seen: Mutex::new(Vec::new()),
    };
    let result = catch_up(&*store, &picky, Position::START, 1).await;
    let Err(cqrskit::CatchUpError::Projector { source, checkpoint }) = result else {
        panic!("expected the projector to stop at the large deposit, got {result:?}");
    };
    assert_eq!(source.version, 5);
    assert_eq!(
        *picky.seen.lock().expect("lock"),
        ["DepositMade", "DepositMade"]
    );
    let third_deposit = store
        .read_stream(&Accounts::stream_id("acc"), 3, 1)
        .await
        .expect("read");
    assert_eq!(checkpoint, third_deposit[0].position);
}

/// An event is found by its id; an unknown id finds nothing.
pub async fn event_by_id_finds_a_stored_event(store: Store) {
    let appended = store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(3))
        .await
        .expect("append");
    let second = &appended.events[1];
    let found = store
        .event_by_id(second.event_id)
        .await
        .expect("look up")
        .expect("found");
    assert_eq!((found.version, found.position), (2, second.position));
    assert!(
        store
            .event_by_id(Uuid::now_v7())
            .await
            .expect("look up")
            .is_none()
    );
}

/// Every event carrying a correlation id, across streams, in log order.
pub async fn events_by_correlation_follow_one_business_transaction(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let request = Metadata::new().with_correlation_id(Uuid::now_v7());
    let opened = accounts
        .execute_with("a", OpenAccount { owner: "A".into() }, request.clone())
        .await
        .expect("open a");
    accounts
        .execute("b", OpenAccount { owner: "B".into() })
        .await
        .expect("open b, another request");
    accounts
        .execute_with(
            "b",
            Deposit { amount: 5 },
            Metadata::caused_by(&opened.events[0]),
        )
        .await
        .expect("deposit caused by the opening of a");
    let correlated = store
        .events_by_correlation(request.correlation_id.expect("set"), 10)
        .await
        .expect("query");
    let found: Vec<(String, u64)> = correlated
        .iter()
        .map(|e| (e.stream.aggregate_id.clone(), e.version))
        .collect();
    assert_eq!(found, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert_eq!(
        correlated[1].metadata.causation_id,
        Some(opened.events[0].event_id)
    );
}

/// Events of given types recorded in a time range, in recording order.
pub async fn events_in_time_range_by_type(store: Store) {
    let early = store
        .append(
            &stream("a"),
            ExpectedVersion::NoStream,
            vec![event("Ticked", "1"), event("Rang", "1")],
        )
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = store
        .append(
            &stream("a"),
            ExpectedVersion::Exact(2),
            vec![event("Ticked", "2")],
        )
        .await
        .expect("append");
    let start = early.events[0].recorded_at;
    let split = late.events[0].recorded_at;
    let far = split + chrono::Duration::days(1);
    let ids = |events: Vec<cqrskit::StoredEvent>| {
        events.into_iter().map(|e| e.event_id).collect::<Vec<_>>()
    };

    let ticked = LogFilter::event_types(["Ticked"]);
    let all_ticks = store
        .events_in_time_range(&ticked, start, far, 10)
        .await
        .expect("query");
    assert_eq!(
        ids(all_ticks),
        [early.events[0].event_id, late.events[0].event_id]
    );
    let before_split = store
        .events_in_time_range(&ticked, start, split, 10)
        .await
        .expect("query");
    assert_eq!(ids(before_split), [early.events[0].event_id]);
    let every_type = store
        .events_in_time_range(&LogFilter::all(), start, split, 10)
        .await
        .expect("query");
    assert_eq!(every_type.len(), 2);
}

/// A pipeline that caches aggregate states still judges every command against
/// the newest state: a decision from a cached state stands only when its
/// append proves the state current; a stale state's conflict, rejection or
/// decision to do nothing is decided again from a fresh load, with or without
/// a retry policy.
pub async fn state_cache_stays_correct_when_another_writer_moves_the_aggregate(store: Store) {
    let cached = Accounts::new(store.clone(), ())
        .with_state_cache(100)
        .with_retry(RetryPolicy::retries(3));
    let other_process = Accounts::new(store.clone(), ());
    cached
        .execute("acc", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    cached
        .execute("acc", Deposit { amount: 100 })
        .await
        .expect("deposit");
    other_process
        .execute("acc", Withdraw { amount: 30 })
        .await
        .expect("withdraw elsewhere");
    // The cache still says 100; the store says 70.
    let result = cached.execute("acc", Withdraw { amount: 80 }).await;
    assert!(
        matches!(
            result,
            Err(CommandError::Rejected(AccountError::InsufficientFunds {
                balance: 70,
                requested: 80
            }))
        ),
        "{result:?}"
    );
    let outcome = cached
        .execute("acc", Withdraw { amount: 70 })
        .await
        .expect("withdraw what is there");
    assert_eq!(outcome.version, 4);
    assert_eq!(cached.load("acc").await.expect("load").state.balance, 0);

    // Without retries, a stale state never surfaces: its conflict is decided
    // again from a fresh load.
    let no_retry = Accounts::new(store.clone(), ()).with_state_cache(100);
    no_retry
        .execute("acc", Deposit { amount: 5 })
        .await
        .expect("deposit, caching version 5 and balance 5");
    other_process
        .execute("acc", Deposit { amount: 1 })
        .await
        .expect("deposit elsewhere");
    let outcome = no_retry
        .execute("acc", Deposit { amount: 2 })
        .await
        .expect("the stale entry is reloaded, not reported");
    assert_eq!(outcome.version, 7);

    // Nor does a stale state refuse what the newest state allows: the cache
    // says 8, the store says 58 after another deposit elsewhere.
    other_process
        .execute("acc", Deposit { amount: 50 })
        .await
        .expect("deposit elsewhere");
    let outcome = no_retry
        .execute("acc", Withdraw { amount: 40 })
        .await
        .expect("judged against the newest balance, not the cached one");
    assert_eq!(outcome.version, 9);
    assert_eq!(no_retry.load("acc").await.expect("load").state.balance, 18);
}
