//! Reads: a stream, the global log (paged, filtered, tailed under
//! concurrent writers), an event by id, by correlation, by time.

use super::*;

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
    let correlated = queries(&store)
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
    let all_ticks = queries(&store)
        .events_in_time_range(&ticked, start, far, 10)
        .await
        .expect("query");
    assert_eq!(
        ids(all_ticks),
        [early.events[0].event_id, late.events[0].event_id]
    );
    let before_split = queries(&store)
        .events_in_time_range(&ticked, start, split, 10)
        .await
        .expect("query");
    assert_eq!(ids(before_split), [early.events[0].event_id]);
    let every_type = queries(&store)
        .events_in_time_range(&LogFilter::all(), start, split, 10)
        .await
        .expect("query");
    assert_eq!(every_type.len(), 2);
}
