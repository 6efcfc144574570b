//! Group commit: appends queued behind a group in flight are written by one
//! statement and one commit, and each keeps its own outcome.
//!
//! Grouping is made certain, not left to timing: with one group in flight
//! at most, a first append is held on a row lock by an open transaction of
//! the test while the others queue behind it; ending that transaction
//! releases them as the next group.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::postgres::{HeldAppend, TestStore};
use cqrskit::postgres::{GroupCommit, PostgresEventStore, StoreOptions};
use cqrskit::{AppendResult, EventStore, ExpectedVersion, NewEvent, StoreError};

/// A store writing every append in groups, one group at a time, and an
/// open transaction holding stream `blocker`'s first version, with an
/// append to that stream waiting on it as the group in flight.
struct Held {
    db: TestStore,
    store: Arc<PostgresEventStore>,
    holder: sqlx::Transaction<'static, sqlx::Postgres>,
    first: tokio::task::JoinHandle<Result<AppendResult, StoreError>>,
}

impl Held {
    async fn new(db: TestStore) -> Self {
        let store = Arc::new(
            db.store.clone().with_options(
                StoreOptions::default()
                    .group_commit(GroupCommit::default().max_in_flight(1).max_alone(0)),
            ),
        );
        let HeldAppend {
            holder,
            append: first,
        } = HeldAppend::start(&db, store.clone(), stream("blocker")).await;
        Self {
            db,
            store,
            holder,
            first,
        }
    }

    /// Starts `appends` behind the held group, then lets the group go.
    async fn release_behind(
        self,
        appends: Vec<(String, ExpectedVersion, Vec<NewEvent>)>,
    ) -> (TestStore, Vec<(String, Result<AppendResult, StoreError>)>) {
        let tasks: Vec<_> = appends
            .into_iter()
            .map(|(id, expected, events)| {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let result = store.append(&stream(&id), expected, events).await;
                    (id, result)
                })
            })
            .collect();
        // Each task queues its append as soon as it runs; the group in
        // flight cannot end before the holder does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.holder.rollback().await.expect("roll back the holder");
        let first = self
            .first
            .await
            .expect("join")
            .expect("the blocker's append");
        assert_eq!(first.stream_version, 1);
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("join"));
        }
        (self.db, results)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commits_once_and_a_conflict_fails_only_its_own_append() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("taken"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("taken");
    let again = ticks(2);
    db.store
        .append(&stream("again"), ExpectedVersion::NoStream, again.clone())
        .await
        .expect("again");
    let held = Held::new(db).await;

    let mut appends: Vec<_> = (0..18)
        .map(|i| (format!("s{i}"), ExpectedVersion::NoStream, ticks(1 + i % 3)))
        .collect();
    appends.push(("taken".into(), ExpectedVersion::NoStream, ticks(1)));
    appends.push(("again".into(), ExpectedVersion::NoStream, again));
    let (db, results) = held.release_behind(appends).await;

    let mut commits = HashSet::new();
    for (id, result) in results {
        match id.as_str() {
            "taken" => match result {
                Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.actual, 1),
                other => panic!("`taken` expected a conflict, got {other:?}"),
            },
            "again" => {
                let result = result.expect("a retry of a stored append");
                assert!(result.already_stored, "`again` was written twice");
                assert_eq!(result.stream_version, 2);
            }
            _ => {
                let result = result.unwrap_or_else(|error| panic!("{id}: {error}"));
                assert!(!result.already_stored);
                let versions: Vec<u64> = result.events.iter().map(|e| e.version).collect();
                let wanted: Vec<u64> = (1..=result.events.len() as u64).collect();
                assert_eq!(versions, wanted, "{id}");
                commits.extend(result.events.iter().map(|e| e.position.transaction));
            }
        }
    }
    assert_eq!(
        commits.len(),
        1,
        "the 18 appends that could be written were not one commit"
    );
    for i in 0..18 {
        let version = db
            .store
            .stream_version(&stream(&format!("s{i}")))
            .await
            .expect("version");
        assert_eq!(version, 1 + i % 3);
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_collides_halfway_is_not_half_written() {
    let db = TestStore::new().await;
    let stored = ticks(1);
    db.store
        .append(&stream("other"), ExpectedVersion::NoStream, stored.clone())
        .await
        .expect("other");
    let held = Held::new(db).await;

    // Its second event reuses an id `other` holds: the group writes its first
    // event, skips the second, and must then write nothing of it.
    let mut half = ticks(2);
    half[1].event_id = stored[0].event_id;
    let mut appends: Vec<_> = (0..10)
        .map(|i| (format!("s{i}"), ExpectedVersion::NoStream, ticks(2)))
        .collect();
    appends.push(("half".into(), ExpectedVersion::NoStream, half));
    let (db, results) = held.release_behind(appends).await;

    for (id, result) in results {
        if id == "half" {
            match result {
                Err(StoreError::EventIdReused { event_id, .. }) => {
                    assert_eq!(event_id, stored[0].event_id);
                }
                other => panic!("`half` expected its reused id refused, got {other:?}"),
            }
        } else {
            let result = result.unwrap_or_else(|error| panic!("{id}: {error}"));
            assert_eq!(result.stream_version, 2, "{id}");
        }
    }
    assert_eq!(
        db.store
            .stream_version(&stream("half"))
            .await
            .expect("version"),
        0,
        "half of `half` was written"
    );
    db.drop_schema().await;
}
