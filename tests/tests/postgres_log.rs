//! What only PostgreSQL can show: commits landing out of position order,
//! connections dropping mid-statement, rows corrupted behind the store's back.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::{PostgresEventStore, StoreOptions};
use cqrskit::{EventStore, ExpectedVersion, LogFilter, Position, StoreError, StreamId};
use sqlx::{Connection, PgConnection};

/// What a reader that only remembers "the last position I saw" reads next.
async fn naive_read(db: &TestStore, after: i64) -> Vec<i64> {
    // language=SQL
    sqlx::query_scalar(&format!(
        "SELECT position FROM {} WHERE position > $1 ORDER BY position",
        db.table("events")
    ))
    .bind(after)
    .fetch_all(db.pool())
    .await
    .expect("naive read")
}

/// Reads the store's log from `after` until `count` events arrived.
async fn tail(
    store: &PostgresEventStore,
    mut after: Position,
    count: usize,
) -> Vec<cqrskit::StoredEvent> {
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while read.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {count} events",
            read.len()
        );
        let batch = store
            .read_log(after, &LogFilter::all(), 5)
            .await
            .expect("read log");
        if let Some(last) = batch.last() {
            after = last.position;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        read.extend(batch);
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_lost_by_a_naive_reader_and_read_by_the_store() {
    let db = TestStore::new().await;
    let store = &db.store;

    // The first writer takes the lower position but has not committed yet...
    let mut slow = db.pool().begin().await.expect("begin");
    let early = store
        .append_in(
            &mut slow,
            &stream("slow"),
            ExpectedVersion::NoStream,
            ticks(1),
        )
        .await
        .expect("append in the open transaction");
    // ...while a second writer takes a higher position and commits.
    let fast = store
        .append(&stream("fast"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append and commit");
    assert!(early.events[0].position.sequence < fast.events[0].position.sequence);

    // The naive reader sees the committed event and moves its checkpoint past
    // the one still in flight.
    let first_read = naive_read(&db, 0).await;
    assert_eq!(first_read, [fast.events[0].position.sequence as i64]);
    // The store's reader does not move past a transaction that is still open.
    let held_back = store
        .read_log(Position::START, &LogFilter::all(), 10)
        .await
        .expect("read");
    assert!(
        held_back.is_empty(),
        "read past an open transaction: {held_back:?}"
    );
    // And it names the session that holds it back.
    let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *slow)
        .await
        .expect("its transaction id");
    let holder = store
        .oldest_open_append()
        .await
        .expect("query")
        .expect("the open append is named");
    assert_eq!(holder.transaction_id, xid as u64);

    slow.commit().await.expect("commit the slow writer");

    // The slow writer's event is now committed below the naive checkpoint: lost.
    assert!(naive_read(&db, first_read[0]).await.is_empty());
    // The store's reader gets both, the earlier transaction first.
    let read = tail(store, Position::START, 2).await;
    let ids: Vec<_> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [early.events[0].event_id, fast.events[0].event_id]);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_with_delayed_commits_are_read_exactly_once_in_stream_order() {
    const WRITERS: usize = 6;
    const TRANSACTIONS: usize = 8;
    const EVENTS: usize = 2;
    let db = TestStore::new().await;
    let store = Arc::new(db.store.clone());

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let id = format!("writer-{writer}");
            for round in 0..TRANSACTIONS {
                let mut tx = store.pool().begin().await.expect("begin");
                let expected = ExpectedVersion::Exact((round * EVENTS) as u64);
                store
                    .append_in(&mut tx, &stream(&id), expected, ticks(EVENTS))
                    .await
                    .expect("append");
                // Hold the transaction open for a while, so commits land out
                // of position order across writers.
                let millis = ((writer * 7 + round * 13) % 25) as f64 / 1000.0;
                sqlx::query("SELECT pg_sleep($1)")
                    .bind(millis)
                    .execute(&mut *tx)
                    .await
                    .expect("sleep");
                tx.commit().await.expect("commit");
            }
        }));
    }

    let total = WRITERS * TRANSACTIONS * EVENTS;
    let read = tail(&store, Position::START, total).await;
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut seen = HashSet::new();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for pair in read.windows(2) {
        assert!(pair[0].position < pair[1].position, "log order broken");
    }
    for event in &read {
        assert!(seen.insert(event.event_id), "{} read twice", event.event_id);
        let last = versions
            .entry(event.stream.aggregate_id.clone())
            .or_default();
        assert_eq!(event.version, *last + 1, "{} out of order", event.stream);
        *last = event.version;
    }
    assert_eq!(seen.len(), total);
    // Nothing more arrives: every event was read exactly once.
    let after = read.last().map(|e| e.position).unwrap_or_default();
    assert!(
        store
            .read_log(after, &LogFilter::all(), 10)
            .await
            .expect("read")
            .is_empty()
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_mid_append_stores_no_partial_batch() {
    let db = TestStore::new().await;
    let store = db.store.clone();
    let target = stream("contended");

    // A transaction holding version 1 makes the victim's insert wait.
    let mut blocker = db.pool().begin().await.expect("begin");
    store
        .append_in(&mut blocker, &target, ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("blocker appends");

    let mut victim = PgConnection::connect(&cqrs_tests::postgres::database_url())
        .await
        .expect("connect");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .expect("pid");
    let append = tokio::spawn({
        let store = store.clone();
        let target = target.clone();
        async move {
            store
                .append_in(&mut victim, &target, ExpectedVersion::Any, ticks(5))
                .await
        }
    });

    // Once the victim waits on the blocker's row, kill its connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
        )
        .bind(pid)
        .fetch_optional(db.pool())
        .await
        .expect("activity")
        .unwrap_or(false);
        if waiting {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the victim never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(db.pool())
        .await
        .expect("terminate");
    let result = append.await.expect("task");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );

    blocker.rollback().await.expect("rollback");
    assert_eq!(store.stream_version(&target).await.expect("version"), 0);
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", db.table("events")))
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(rows, 0, "a partial batch was stored");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_row_is_a_typed_error_naming_its_place() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append");
    // A row written behind the store's back, with metadata of the wrong shape.
    // language=SQL
    sqlx::query(&format!(
        "INSERT INTO {} (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata)
         VALUES (gen_random_uuid(), 'thing', 'a', 2, 'Ticked', 1, '{{}}', '{{\"entries\": [1, 2]}}')",
        db.table("events")
    ))
    .execute(db.pool())
    .await
    .expect("insert a corrupted row");

    match db.store.read_stream(&stream("a"), 1, 10).await {
        Err(StoreError::Corrupted { location, reason }) => {
            assert!(
                location.contains("version 2 of stream thing/a"),
                "{location}"
            );
            assert!(reason.contains("metadata"), "{reason}");
        }
        other => panic!("expected a corrupted-row error, got {other:?}"),
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_version_append_never_writes_into_a_hole() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("holed"), ExpectedVersion::NoStream, ticks(3))
        .await
        .expect("append");
    // An operator deleted version 2 by hand (rows are immutable, not undeletable).
    // language=SQL
    sqlx::query(&format!(
        "DELETE FROM {} WHERE aggregate_id = 'holed' AND version = 2",
        db.table("events")
    ))
    .execute(db.pool())
    .await
    .expect("delete a row");

    match db
        .store
        .append(&stream("holed"), ExpectedVersion::Exact(1), ticks(1))
        .await
    {
        Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.actual, 3),
        other => panic!("an append at version 1 of a stream at 3 must conflict, got {other:?}"),
    }
    let versions: Vec<u64> = db
        .store
        .read_stream(&stream("holed"), 1, 10)
        .await
        .expect("read")
        .iter()
        .map(|event| event.version)
        .collect();
    assert_eq!(versions, [1, 3], "nothing was written into the hole");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violated_key_of_the_users_own_is_an_error_not_an_endless_retry() {
    let db = TestStore::new().await;
    // An index an application added: one `Ticked` per stream.
    // language=SQL
    sqlx::query(&format!(
        "CREATE UNIQUE INDEX one_tick_per_stream ON {} (aggregate_id) WHERE event_type = 'Ticked'",
        db.table("events")
    ))
    .execute(db.pool())
    .await
    .expect("create the index");
    db.store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append");
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(1)] {
        let refused = tokio::time::timeout(
            Duration::from_secs(5),
            db.store.append(&stream("a"), expected, ticks(1)),
        )
        .await
        .expect("the append gives up at once");
        match refused {
            Err(StoreError::Backend(error)) => {
                assert!(error.to_string().contains("one_tick_per_stream"), "{error}")
            }
            other => panic!("expected the database's refusal, got {other:?}"),
        }
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_in_a_transaction_leaves_the_transaction_usable() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("append");
    let mut tx = db.pool().begin().await.expect("begin");
    // language=SQL
    sqlx::query(&format!("CREATE TABLE {} (n int)", db.table("outbox")))
        .execute(&mut *tx)
        .await
        .expect("a write of the caller's");
    // Exact(1) on a stream at 2 fails on the primary key inside the
    // caller's transaction (the known-version form is not used here).
    match db
        .store
        .append_in(
            &mut tx,
            &stream("a"),
            ExpectedVersion::StreamExists,
            ticks(1),
        )
        .await
    {
        Ok(appended) => assert_eq!(appended.stream_version, 3),
        Err(other) => panic!("StreamExists on an existing stream appends, got {other}"),
    }
    match db
        .store
        .append_in(&mut tx, &stream("a"), ExpectedVersion::Exact(1), ticks(1))
        .await
    {
        Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.actual, 3),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = ticks(1);
    db.store
        .append_in(
            &mut tx,
            &stream("b"),
            ExpectedVersion::NoStream,
            stored.clone(),
        )
        .await
        .expect("append to another stream");
    let again = db
        .store
        .append_in(&mut tx, &stream("b"), ExpectedVersion::Any, stored)
        .await
        .expect("the same events again in the same transaction");
    assert!(again.already_stored);
    tx.commit()
        .await
        .expect("the caller's transaction still commits");
    assert_eq!(
        db.store
            .stream_version(&stream("a"))
            .await
            .expect("version"),
        3
    );
    assert_eq!(
        db.store
            .stream_version(&stream("b"))
            .await
            .expect("version"),
        1
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_cannot_be_rewritten() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append");
    // language=SQL
    let result = sqlx::query(&format!(
        "UPDATE {} SET payload = '{{}}'",
        db.table("events")
    ))
    .execute(db.pool())
    .await;
    let error = result.expect_err("rows are immutable");
    assert!(error.to_string().contains("never rewritten"), "{error}");
    // Not even the tag that orders the log, which only the transaction that
    // inserted a row may raise before it commits.
    // language=SQL
    let result = sqlx::query(&format!(
        "UPDATE {} SET transaction_id = (transaction_id::text::bigint + 1)::text::xid8",
        db.table("events")
    ))
    .execute(db.pool())
    .await;
    let error = result.expect_err("a committed row's tag is immutable");
    assert!(error.to_string().contains("never rewritten"), "{error}");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_keep_stores_apart_and_migrating_twice_changes_nothing() {
    let first = TestStore::new().await;
    let second = TestStore::new().await;
    first
        .store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("append");
    second
        .store
        .migrate()
        .await
        .expect("migrating again is a no-op");
    assert_eq!(
        second
            .store
            .stream_version(&stream("a"))
            .await
            .expect("version"),
        0
    );
    assert_eq!(
        first
            .store
            .stream_version(&stream("a"))
            .await
            .expect("version"),
        2
    );

    let invalid = PostgresEventStore::from_pool(first.pool().clone())
        .with_schema("Robert'); DROP TABLE events;--");
    assert!(matches!(
        invalid,
        Err(cqrskit::postgres::Error::InvalidSchemaName(_))
    ));
    first.drop_schema().await;
    second.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_reported_as_unavailable() {
    // Nothing listens on port 1.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .expect("lazy pool");
    let store = PostgresEventStore::from_pool(pool);
    let result = store.stream_version(&StreamId::new("thing", "a")).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

/// The next notification within `within`, if one comes.
async fn wait(
    listener: &mut sqlx::postgres::PgListener,
    within: Duration,
) -> Option<Result<sqlx::postgres::PgNotification, sqlx::Error>> {
    tokio::time::timeout(within, listener.recv()).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_appends_wakes_listeners_at_once_then_at_most_once_per_interval() {
    let db = TestStore::new().await;
    let interval = Duration::from_millis(700);
    let store = db
        .store
        .clone()
        .with_options(StoreOptions::default().notify_interval(interval));
    let mut listener = sqlx::postgres::PgListener::connect_with(db.pool())
        .await
        .expect("listener connects");
    listener
        .listen(&store.notification_channel())
        .await
        .expect("listen");

    for _ in 0..20 {
        store
            .append(&stream("burst"), ExpectedVersion::Any, ticks(1))
            .await
            .expect("append");
    }
    let first = wait(&mut listener, Duration::from_secs(5))
        .await
        .expect("the first append is announced")
        .expect("notification");
    let first_at = std::time::Instant::now();
    assert_eq!(first.channel(), store.notification_channel());
    // The other 19 appends committed within the interval: one more
    // notification covers them all, no sooner than the interval.
    wait(&mut listener, Duration::from_secs(5))
        .await
        .expect("the rest of the burst is announced")
        .expect("notification");
    assert!(
        first_at.elapsed() >= interval - Duration::from_millis(200),
        "second notification after {:?}, interval {interval:?}",
        first_at.elapsed()
    );
    assert!(
        wait(&mut listener, Duration::from_millis(300))
            .await
            .is_none(),
        "a third notification for one burst"
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_and_audit_queries_are_answered_from_indexes() {
    let db = TestStore::new().await;
    db.store
        .append(&stream("indexed"), ExpectedVersion::Any, ticks(3))
        .await
        .expect("append");
    let events = db.table("events");
    // The predicates of the store's statements, each with the indexes that
    // may serve it on a table of any size.
    let cases: [(String, &[&str]); 6] = [
        (
            format!("SELECT * FROM {events} WHERE event_id = '018f3b1e-7c4a-7def-8abc-0123456789ab'"),
            &["events_event_id_key"],
        ),
        (
            format!(
                "SELECT * FROM {events} WHERE correlation_id = '018f3b1e-7c4a-7def-8abc-0123456789ab'
                 ORDER BY transaction_id, position LIMIT 10"
            ),
            &["events_correlation_idx"],
        ),
        (
            format!(
                "SELECT * FROM {events} WHERE event_type = ANY('{{Ticked}}')
                 AND recorded_at >= now() - interval '1 hour' AND recorded_at < now()
                 ORDER BY recorded_at, transaction_id, position LIMIT 10"
            ),
            &["events_recorded_at_brin", "events_type_log_idx"],
        ),
        (
            format!(
                "SELECT * FROM {events}
                 WHERE recorded_at >= now() - interval '1 hour' AND recorded_at < now()
                 ORDER BY recorded_at, transaction_id, position LIMIT 10"
            ),
            &["events_recorded_at_brin"],
        ),
        (
            format!(
                "SELECT * FROM {events} WHERE (transaction_id, position) > ('5'::xid8, 0)
                 ORDER BY transaction_id, position LIMIT 10"
            ),
            &["events_log_idx"],
        ),
        (
            format!(
                "SELECT * FROM {events} WHERE event_type = 'Ticked' AND (transaction_id, position) > ('5'::xid8, 0)
                 ORDER BY transaction_id, position LIMIT 10"
            ),
            &["events_type_log_idx"],
        ),
    ];
    let mut connection = db.pool().acquire().await.expect("connection");
    // On a three-row table a scan is cheapest; forbid it to see which index
    // the planner would use on a large one.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *connection)
        .await
        .expect("set");
    for (query, indexes) in cases {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {query}"))
            .fetch_all(&mut *connection)
            .await
            .expect("explain");
        let plan = plan.join("\n");
        assert!(
            indexes.iter().any(|index| plan.contains(index)),
            "{query}\nis not served by {indexes:?}:\n{plan}"
        );
    }
    sqlx::query("RESET enable_seqscan")
        .execute(&mut *connection)
        .await
        .expect("reset");
    drop(connection);
    db.drop_schema().await;
}
