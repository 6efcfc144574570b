//! The columns derived from an event (its correlation id, its stream's
//! slice) are sent by the store, and filled in by the database for a writer
//! that does not send them (an instance of the version before, during a
//! rolling deploy): either way they hold the same values.

use cqrs_tests::fixtures::event;
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::StoreOptions;
use cqrskit::{EventQueries, EventStore, ExpectedVersion, Metadata, StreamId};
use uuid::Uuid;

/// The slice as the database computes it (migration 7's expression).
const SQL_SLICE: &str =
    "SELECT (('x' || left(md5($1 || '/' || $2), 8))::bit(32)::bigint % 1024)::smallint";

/// The stored (slice, correlation id) of an event.
async fn derived(db: &TestStore, event_id: Uuid) -> (i16, Option<Uuid>) {
    // language=SQL
    sqlx::query_as(&format!(
        "SELECT slice, correlation_id FROM {} WHERE event_id = $1",
        db.table("events")
    ))
    .bind(event_id)
    .fetch_one(db.pool())
    .await
    .expect("the event is stored")
}

fn streams() -> Vec<StreamId> {
    let mut streams: Vec<StreamId> = (0..300)
        .map(|n| StreamId::new("account", format!("acc-{n}")))
        .collect();
    streams.extend([
        StreamId::new("order", "ünïcødé/ids 🚚"),
        StreamId::new("a/b", "c/d"),
        StreamId::new("x", "y".repeat(500)),
    ]);
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_sends_the_slice_and_correlation_id_the_database_would_compute() {
    let db = TestStore::new().await;
    let mut slices = std::collections::HashSet::new();
    for stream in streams() {
        let expected: i16 = sqlx::query_scalar(SQL_SLICE)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .fetch_one(db.pool())
            .await
            .expect("slice in SQL");
        assert_eq!(i32::from(stream.slice()), i32::from(expected), "{stream}");
        slices.insert(expected);
    }
    assert!(slices.len() > 200, "the streams spread over the slices");

    let stream = StreamId::new("order", "ünïcødé/ids 🚚");
    let correlation = Uuid::now_v7();
    let mut correlated = event("Placed", "{}");
    correlated.metadata = Metadata::new().with_correlation_id(correlation);
    let plain = event("Noted", "{}");
    let (correlated_id, plain_id) = (correlated.event_id, plain.event_id);
    db.store
        .append(&stream, ExpectedVersion::NoStream, vec![correlated, plain])
        .await
        .expect("append");
    let slice = i16::try_from(stream.slice()).expect("below 1024");
    assert_eq!(
        derived(&db, correlated_id).await,
        (slice, Some(correlation))
    );
    assert_eq!(derived(&db, plain_id).await, (slice, None));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_without_the_derived_columns_gets_them_from_the_database() {
    let db = TestStore::new().await;
    let stream = StreamId::new("account", "written-the-old-way");
    let correlation = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    // What the append of the version before sent: no correlation id, no slice.
    // language=SQL
    sqlx::query(&format!(
        "INSERT INTO {} (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, 1, 'Opened', 1, '{{}}', $4::jsonb)",
        db.table("events")
    ))
    .bind(event_id)
    .bind(&stream.aggregate_type)
    .bind(&stream.aggregate_id)
    .bind(format!(r#"{{"correlation_id":"{correlation}"}}"#))
    .execute(db.pool())
    .await
    .expect("an insert without the derived columns");
    let slice = i16::try_from(stream.slice()).expect("below 1024");
    assert_eq!(derived(&db, event_id).await, (slice, Some(correlation)));
    let found = db
        .store
        .events_by_correlation(correlation, 10)
        .await
        .expect("by correlation");
    assert_eq!(
        found.iter().map(|event| event.event_id).collect::<Vec<_>>(),
        [event_id]
    );
    // The store's own appends go on after it.
    db.store
        .append(
            &stream,
            ExpectedVersion::Exact(1),
            vec![event("Noted", "{}")],
        )
        .await
        .expect("append after the old-style row");
    db.drop_schema().await;
}

/// The error an append meets on a store whose migrations were not all
/// applied: `SchemaBehind`, naming the fix, and nothing written.
fn assert_schema_behind(result: Result<cqrskit::AppendResult, cqrskit::StoreError>) {
    match result {
        Err(cqrskit::StoreError::Backend(source)) => {
            let behind = source
                .downcast_ref::<cqrskit::postgres::SchemaBehind>()
                .unwrap_or_else(|| panic!("not a SchemaBehind: {source}"));
            assert!(behind.to_string().contains("migrate"), "{behind}");
        }
        other => panic!("expected the schema to be reported behind, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_meeting_an_older_schema_is_told_to_migrate() {
    let db = TestStore::new().await;
    // The correlation id as migration 1 made it: generated by the database,
    // so a value sent for it is refused.
    // language=SQL
    sqlx::raw_sql(&format!(
        "ALTER TABLE {events} DROP COLUMN correlation_id;
         ALTER TABLE {events} ADD COLUMN correlation_id uuid
             GENERATED ALWAYS AS ((metadata ->> 'correlation_id')::uuid) STORED",
        events = db.table("events")
    ))
    .execute(db.pool())
    .await
    .expect("put the old column back");
    let stream = StreamId::new("account", "too-new");
    for store in [
        db.store.clone(),
        db.store
            .clone()
            .with_options(StoreOptions::default().group_commit(None)),
    ] {
        assert_schema_behind(
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![event("Opened", "{}")],
                )
                .await,
        );
    }
    assert_eq!(db.store.stream_version(&stream).await.expect("version"), 0);

    // A schema never migrated at all.
    let unmigrated = cqrskit::postgres::PostgresEventStore::from_pool(db.pool().clone())
        .with_schema("never_migrated_schema")
        .expect("a valid name");
    assert_schema_behind(
        unmigrated
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![event("Opened", "{}")],
            )
            .await,
    );
    db.drop_schema().await;
}
