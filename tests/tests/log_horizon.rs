//! What holds readers of the global log back, and what does not: an append
//! still in flight does (its events could still commit below the reader's
//! checkpoint); a transaction that appends nothing, in another schema or
//! another table, does not. And whatever mix of transactions runs, a reader
//! never skips an event, including appends in transactions that wrote other
//! tables first and appends that roll back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::PostgresEventStore;
use cqrskit::{EventStore, ExpectedVersion, LogFilter, Position, StoredEvent};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A schema and table of their own, written by transactions that append no
/// events: another application sharing the database.
struct Unrelated {
    schema: String,
    pool: PgPool,
}

impl Unrelated {
    async fn new(pool: &PgPool) -> Self {
        let schema = format!("unrelated_{}", Uuid::now_v7().simple());
        for statement in [
            format!("CREATE SCHEMA {schema}"),
            format!("CREATE TABLE {schema}.work (n int)"),
        ] {
            sqlx::query(&statement)
                .execute(pool)
                .await
                .expect("create the unrelated schema");
        }
        Self {
            schema,
            pool: pool.clone(),
        }
    }

    /// A transaction that has written a row (and so has a transaction id),
    /// left open.
    async fn open_write(&self) -> Transaction<'static, Postgres> {
        let mut tx = self.pool.begin().await.expect("begin");
        // language=SQL
        sqlx::query(&format!("INSERT INTO {}.work VALUES (1)", self.schema))
            .execute(&mut *tx)
            .await
            .expect("an unrelated write");
        tx
    }

    async fn drop(self) {
        // language=SQL
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .expect("drop the unrelated schema");
    }
}

/// A write of the caller's own, in the store's schema, before appending.
async fn write_first(db: &TestStore, tx: &mut Transaction<'static, Postgres>) {
    let table = db.table("outbox");
    for statement in [
        format!("CREATE TABLE IF NOT EXISTS {table} (n int)"),
        format!("INSERT INTO {table} VALUES (1)"),
    ] {
        sqlx::query(&statement)
            .execute(&mut **tx)
            .await
            .expect("a write of the caller's");
    }
}

/// Reads the log after `after` until `count` events arrived (or 10 s
/// passed). A horizon may lag a commit by a moment (it also waits for
/// transactions of other tests that ended just as it looked), so a single
/// read right after a commit may come back short; what matters is that the
/// events arrive, in order, while the transactions the test holds open are
/// still open.
async fn read_all(store: &PostgresEventStore, after: Position, count: usize) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = store
            .read_log(after, &LogFilter::all(), 100)
            .await
            .expect("read the log");
        if read.len() >= count || tokio::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_appends_nothing_does_not_hold_readers_back() {
    let db = TestStore::new().await;
    let unrelated = Unrelated::new(db.pool()).await;
    let open = unrelated.open_write().await;
    let mut same_schema = db.pool().begin().await.expect("begin");
    write_first(&db, &mut same_schema).await;

    let appended = db
        .store
        .append(&stream("a"), ExpectedVersion::NoStream, ticks(2))
        .await
        .expect("append");

    // Both transactions are still open, and wrote before the append began.
    let read = read_all(&db.store, Position::START, 2).await;
    let ids: Vec<_> = read.iter().map(|event| event.event_id).collect();
    let appended_ids: Vec<_> = appended.events.iter().map(|event| event.event_id).collect();
    assert_eq!(
        ids, appended_ids,
        "held back by a transaction that appends nothing"
    );
    assert_eq!(db.store.oldest_open_append().await.expect("query"), None);

    open.rollback().await.expect("rollback");
    same_schema.rollback().await.expect("rollback");
    unrelated.drop().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_after_other_writes_in_its_transaction_is_read_after_later_commits() {
    let db = TestStore::new().await;
    // The transaction takes its id with a write of its own, appends nothing
    // yet, and so holds nobody back...
    let mut late = db.pool().begin().await.expect("begin");
    write_first(&db, &mut late).await;
    let first = db
        .store
        .append(&stream("first"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append");
    // ...so a reader reads past its id.
    let read = read_all(&db.store, Position::START, 1).await;
    assert_eq!(read.len(), 1);
    let checkpoint = read[0].position;

    // Now it appends and commits: its events must still come after the
    // reader's checkpoint.
    let appended = db
        .store
        .append_in(
            &mut late,
            &stream("late"),
            ExpectedVersion::NoStream,
            ticks(2),
        )
        .await
        .expect("append after other writes");
    assert!(
        appended
            .events
            .iter()
            .all(|event| event.position > checkpoint),
        "tagged behind a checkpoint a reader may hold: {:?} vs {checkpoint:?}",
        appended.events
    );
    late.commit().await.expect("commit");

    let read = read_all(&db.store, checkpoint, 2).await;
    let ids: Vec<_> = read.iter().map(|event| event.event_id).collect();
    let expected: Vec<_> = appended.events.iter().map(|event| event.event_id).collect();
    assert_eq!(ids, expected, "the late append was skipped");
    let positions: Vec<_> = read.iter().map(|event| event.position).collect();
    let reported: Vec<_> = appended.events.iter().map(|event| event.position).collect();
    assert_eq!(
        positions, reported,
        "append_in reported other positions than the log holds"
    );
    assert_eq!(first.events.len(), 1);
    db.drop_schema().await;
}

/// How one writer's transaction goes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `append`, committed on its own.
    Plain,
    /// Writes another table, then appends, waits, commits.
    WriteThenAppend,
    /// Appends, then writes another table, waits, commits.
    AppendThenWrite,
    /// Writes another table, appends, waits, rolls back.
    WriteAppendRollback,
}

const SHAPES: [Shape; 4] = [
    Shape::Plain,
    Shape::WriteThenAppend,
    Shape::AppendThenWrite,
    Shape::WriteAppendRollback,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_skip_nothing_while_unrelated_and_mixed_transactions_run() {
    const WRITERS: usize = 5;
    const ROUNDS: usize = 12;
    let db = Arc::new(TestStore::new().await);
    let unrelated = Arc::new(Unrelated::new(db.pool()).await);
    // language=SQL
    sqlx::query(&format!("CREATE TABLE {} (n int)", db.table("outbox")))
        .execute(db.pool())
        .await
        .expect("create the caller's table");

    let stop = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    for worker in 0..2u64 {
        let (unrelated, stop) = (unrelated.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let tx = unrelated.open_write().await;
                n = n
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                tokio::time::sleep(Duration::from_millis(n >> 59)).await;
                tx.commit().await.expect("unrelated commit");
            }
        }));
    }

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let id = format!("writer-{writer}");
            let mut version = 0;
            let mut committed = Vec::new();
            for round in 0..ROUNDS {
                let shape = SHAPES[(writer * 3 + round) % SHAPES.len()];
                let hold = Duration::from_millis(((writer * 7 + round * 13) % 20) as u64);
                let expected = ExpectedVersion::Exact(version);
                if let Shape::Plain = shape {
                    let done = db
                        .store
                        .append(&stream(&id), expected, ticks(2))
                        .await
                        .expect("append");
                    committed.extend(done.events.iter().map(|event| event.event_id));
                    version += 2;
                    continue;
                }
                let mut tx = db.pool().begin().await.expect("begin");
                if matches!(shape, Shape::WriteThenAppend | Shape::WriteAppendRollback) {
                    write_first(&db, &mut tx).await;
                    tokio::time::sleep(hold).await;
                }
                let done = db
                    .store
                    .append_in(&mut tx, &stream(&id), expected, ticks(2))
                    .await
                    .expect("append in a transaction");
                if let Shape::AppendThenWrite = shape {
                    write_first(&db, &mut tx).await;
                }
                tokio::time::sleep(hold).await;
                if let Shape::WriteAppendRollback = shape {
                    tx.rollback().await.expect("rollback");
                } else {
                    tx.commit().await.expect("commit");
                    committed.extend(done.events.iter().map(|event| event.event_id));
                    version += 2;
                }
            }
            committed
        }));
    }

    // One reader tails the log all along, as a projection does, until it
    // has as many events as were committed (known once the writers end).
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let (db, target) = (db.clone(), target.clone());
        tokio::spawn(async move {
            let mut after = Position::START;
            let mut read: Vec<StoredEvent> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while read.len() < target.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                let batch = db
                    .store
                    .read_log(after, &LogFilter::all(), 7)
                    .await
                    .expect("read");
                match batch.last() {
                    Some(last) => after = last.position,
                    None => tokio::time::sleep(Duration::from_millis(3)).await,
                }
                read.extend(batch);
            }
            // Anything more would be an event read twice or a rolled-back one.
            read.extend(
                db.store
                    .read_log(after, &LogFilter::all(), 100)
                    .await
                    .expect("read"),
            );
            read
        })
    };

    let mut expected = HashSet::new();
    for writer in writers {
        expected.extend(writer.await.expect("writer"));
    }
    target.store(expected.len(), Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in background {
        task.await.expect("unrelated writer");
    }
    let read = reader.await.expect("reader");

    for pair in read.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "log order broken at {pair:?}"
        );
    }
    let mut seen = HashSet::new();
    for event in &read {
        assert!(seen.insert(event.event_id), "{} read twice", event.event_id);
        assert!(
            expected.contains(&event.event_id),
            "{} was rolled back but read",
            event.event_id
        );
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "the reader skipped {} events: {missing:?}",
        missing.len()
    );

    let db = Arc::try_unwrap(db).ok().expect("no other owner");
    let unrelated = Arc::try_unwrap(unrelated).ok().expect("no other owner");
    unrelated.drop().await;
    db.drop_schema().await;
}
