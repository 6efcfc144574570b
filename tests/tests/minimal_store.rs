//! The conformance suite against a store that implements only the required
//! methods of `EventStore`: the defaults every other method has must keep
//! the whole contract.

use std::sync::Arc;

use chrono::Utc;
use cqrs_tests::fixtures::{json, stream, ticks};
use cqrs_tests::minimal::MinimalStore;
use cqrskit::{
    EventStore, ExpectedVersion, LogFilter, Position, ReplayEvent, ReplayRequest, ReplaySink,
    Snapshot, StoreError,
};

macro_rules! minimal {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            cqrs_tests::scenarios::$name(Arc::new(MinimalStore::new())).await;
        }
    )*};
}

cqrs_tests::for_each_scenario!(minimal);

/// Records what a replay delivers.
#[derive(Default)]
struct Seen {
    snapshots: usize,
    versions: Vec<u64>,
}

impl ReplaySink for Seen {
    fn snapshot(&mut self, _: &Snapshot) -> bool {
        self.snapshots += 1;
        true
    }

    fn event(&mut self, event: ReplayEvent<'_>) -> Result<(), StoreError> {
        self.versions.push(event.version);
        Ok(())
    }
}

/// The default `stream_version` probes with one-event reads: it must land
/// on the last version at every length, powers of two and their
/// neighbours included.
#[tokio::test]
async fn the_probed_version_is_the_last_one_at_every_length() {
    let store = MinimalStore::bare();
    let mut total = 0;
    for length in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100, 1000, 1025] {
        let counter = stream(&format!("c{length}"));
        store
            .append(&counter, ExpectedVersion::Any, ticks(length))
            .await
            .expect("append");
        assert_eq!(
            store.stream_version(&counter).await.expect("version"),
            length as u64,
            "a stream of {length} events"
        );
        total += length;
    }
    let log = store
        .read_log(Position::START, &LogFilter::all(), usize::MAX)
        .await
        .expect("log");
    assert_eq!(log.len(), total);
}

/// A backend without snapshots still takes appends that carry one and
/// loads by replaying from version 1: nothing is offered that was never kept.
#[tokio::test]
async fn without_snapshots_a_store_appends_and_replays_from_the_start() {
    let store = MinimalStore::bare();
    let counter = stream("c");
    let snapshot = Snapshot {
        stream: counter.clone(),
        version: 3,
        schema_version: 1,
        state: json("{}"),
        taken_at: Utc::now(),
    };
    let appended = store
        .append_with_snapshot(&counter, ExpectedVersion::NoStream, ticks(3), snapshot)
        .await
        .expect("append");
    assert_eq!(appended.stream_version, 3);
    let mut seen = Seen::default();
    let request = ReplayRequest {
        stream: &counter,
        upto: None,
        snapshot_schema: Some(1),
    };
    store.replay(request, &mut seen).await.expect("replay");
    assert_eq!(seen.snapshots, 0, "no snapshot was kept to offer");
    assert_eq!(seen.versions, vec![1, 2, 3]);
}
