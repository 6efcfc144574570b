//! Versions, snapshots and re-appends under the conditions an attack run
//! found wanting: contended `Any` appends, a snapshot ahead of its stream,
//! numbers a store reformats.

use cqrs_examples::bank_account::{AccountCommand, BankAccount, Deposit, OpenAccount};
use cqrskit::{CommandPipeline, ExpectedVersion, LogFilter, Position, Snapshot, StoreError};

use super::{Store, snapshots};
use crate::fixtures::{event, json, stream, ticks};

/// A retried append is recognised however the store reformatted its
/// numbers (`1e16` comes back from PostgreSQL as `10000000000000000`), and
/// two integers that only an exact comparison tells apart (2^70+1 and
/// 2^70+12345, the same as `f64`) are told apart: reusing the id for the
/// second is refused, not taken for a retry.
pub async fn reappending_compares_numbers_exactly(store: Store) {
    let first = event("Ticked", r#"{"n":1e16,"ratio":0.5}"#);
    store
        .append(
            &stream("exact"),
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )
        .await
        .expect("first append");
    let retry = store
        .append(&stream("exact"), ExpectedVersion::NoStream, vec![first])
        .await
        .expect("the same event again is a retry");
    assert!(retry.already_stored);

    let huge = event("Ticked", r#"{"n":1180591620717411303425}"#);
    store
        .append(
            &stream("exact"),
            ExpectedVersion::Exact(1),
            vec![huge.clone()],
        )
        .await
        .expect("append");
    let mut other = huge.clone();
    other.payload = json(r#"{"n":1180591620717411315713}"#);
    match store
        .append(&stream("exact"), ExpectedVersion::Exact(1), vec![other])
        .await
    {
        Err(StoreError::EventIdReused { event_id, .. }) => assert_eq!(event_id, huge.event_id),
        outcome => panic!("other content under a stored id must be refused, got {outcome:?}"),
    }
    assert_eq!(
        store
            .stream_version(&stream("exact"))
            .await
            .expect("version"),
        2
    );
}

/// `Any` expects nothing, and `StreamExists` nothing but an existing
/// stream, so neither conflicts however many writers race for the same
/// stream's next version (50 writers, 5 appends each, the two kinds mixed).
pub async fn any_version_never_conflicts_under_contention(store: Store) {
    const WRITERS: usize = 50;
    const APPENDS: usize = 5;
    store
        .append(&stream("contended"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("create the stream");
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let expected = if writer % 2 == 0 {
            ExpectedVersion::Any
        } else {
            ExpectedVersion::StreamExists
        };
        tasks.spawn(async move {
            for _ in 0..APPENDS {
                store
                    .append(&stream("contended"), expected, ticks(1))
                    .await?;
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome
            .expect("writer task")
            .expect("an Any append never fails");
    }
    let events = store
        .read_stream(&stream("contended"), 1, 1000)
        .await
        .expect("read");
    let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
    assert_eq!(
        versions,
        (1..=(WRITERS * APPENDS + 1) as u64).collect::<Vec<_>>()
    );
}

/// A snapshot claiming a version the stream does not have (saved by a bug,
/// or restored from another database) is ignored: loads replay the events,
/// and commands keep working instead of conflicting forever.
pub async fn a_snapshot_ahead_of_its_stream_is_ignored(store: Store) {
    let accounts = CommandPipeline::<BankAccount>::new(store.clone(), ());
    accounts
        .execute(
            "ahead",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    accounts
        .execute("ahead", AccountCommand::Deposit(Deposit { amount: 5 }))
        .await
        .expect("deposit");
    snapshots(&store)
        .save_snapshot(Snapshot {
            stream: CommandPipeline::<BankAccount>::stream_id("ahead"),
            version: 9,
            schema_version: 1,
            state: json(r#"{"owner":"A","balance":999}"#),
            taken_at: chrono::Utc::now(),
        })
        .await
        .expect("save a snapshot ahead of the stream");

    let loaded = accounts.load("ahead").await.expect("load");
    assert_eq!((loaded.version, loaded.state.balance), (2, 5));
    let outcome = accounts
        .execute("ahead", AccountCommand::Deposit(Deposit { amount: 1 }))
        .await
        .expect("a command after the bad snapshot");
    assert_eq!(outcome.version, 3);
}

/// A filter that names a type twice reads each of its events once.
pub async fn a_filter_naming_a_type_twice_reads_each_event_once(store: Store) {
    store
        .append(&stream("twice"), ExpectedVersion::NoStream, ticks(3))
        .await
        .expect("append");
    super::settled(&store, 3).await;
    let filter = LogFilter::event_types(["Ticked", "Other", "Ticked"]);
    let events = store
        .read_log(Position::START, &filter, 10)
        .await
        .expect("read the log");
    let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
    assert_eq!(versions, [1, 2, 3]);
}
