//! Appends: versions, conflicts, re-appends with the same ids, and writers
//! racing for one version.

use super::*;

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
