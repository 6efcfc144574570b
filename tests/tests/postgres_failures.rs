//! Every kind of failure a PostgreSQL server sends, provoked on a real
//! server and classified (`cqrskit::postgres::failure`): whether a caller
//! should retry, and whether a failed write may have committed. And the
//! store's own answer to one that used to be misread: an append refused by
//! a read-only server (a standby, a primary being demoted) is transient.

use std::time::Duration;

use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::postgres::PostgresEventStore;
use cqrskit::postgres::failure::{Failure, classify};
use cqrskit::{EventStore, ExpectedVersion, StoreError, StreamId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

async fn connection() -> PgConnection {
    PgConnection::connect(&database_url())
        .await
        .expect("connect")
}

/// The error `sql` gets on a fresh connection.
async fn error_of(sql: &str) -> sqlx::Error {
    sqlx::raw_sql(sql)
        .execute(&mut connection().await)
        .await
        .expect_err(sql)
}

fn code(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
        other => format!("{other}"),
    }
}

/// A table of two rows in a schema of the test's own.
async fn two_rows(db: &TestStore) -> String {
    let table = db.table("failures");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO {table} VALUES (1, 0), (2, 0);"
    ))
    .execute(db.pool())
    .await
    .expect("a table");
    table
}

/// The server's refusals for now: retry, nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_now_are_retryable_and_commit_nothing() {
    let db = TestStore::new().await;
    let table = two_rows(&db).await;

    // 57014: a statement cancelled by its timeout.
    let timeout = error_of("SET statement_timeout = 50; SELECT pg_sleep(2)").await;
    // 25006: a write in a read-only transaction.
    let read_only = error_of(&format!(
        "BEGIN READ ONLY; UPDATE {table} SET v = 1 WHERE id = 1"
    ))
    .await;
    // 55P03: a lock not had within lock_timeout.
    let mut holder = connection().await;
    sqlx::raw_sql(&format!(
        "BEGIN; SELECT * FROM {table} WHERE id = 1 FOR UPDATE"
    ))
    .execute(&mut holder)
    .await
    .expect("hold the row");
    let lock = error_of(&format!(
        "SET lock_timeout = 50; SELECT * FROM {table} WHERE id = 1 FOR UPDATE"
    ))
    .await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    // 40001: a serialization failure (write skew between two
    // serializable transactions).
    let (mut one, mut two) = (connection().await, connection().await);
    for (session, id) in [(&mut one, 1), (&mut two, 2)] {
        sqlx::raw_sql(&format!(
            "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM {table};
             UPDATE {table} SET v = v + 1 WHERE id = {id}"
        ))
        .execute(session)
        .await
        .expect("a serializable transaction");
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut one)
        .await
        .expect("the first commits");
    let serialization = sqlx::raw_sql("COMMIT")
        .execute(&mut two)
        .await
        .expect_err("the second cannot");
    // 40P01: a deadlock, each session waiting for the other's row.
    let (mut left, mut right) = (connection().await, connection().await);
    for (session, id) in [(&mut left, 1), (&mut right, 2)] {
        sqlx::raw_sql(&format!(
            "BEGIN; UPDATE {table} SET v = v + 1 WHERE id = {id}"
        ))
        .execute(session)
        .await
        .expect("a row each");
    }
    let (to_two, to_one) = (
        format!("UPDATE {table} SET v = v + 1 WHERE id = 2"),
        format!("UPDATE {table} SET v = v + 1 WHERE id = 1"),
    );
    let (crossed_left, crossed_right) = tokio::join!(
        sqlx::raw_sql(&to_two).execute(&mut left),
        sqlx::raw_sql(&to_one).execute(&mut right),
    );
    let deadlock = crossed_left
        .err()
        .or(crossed_right.err())
        .expect("one of them is the deadlock's victim");

    for (expected, error) in [
        ("57014", timeout),
        ("25006", read_only),
        ("55P03", lock),
        ("40001", serialization),
        ("40P01", deadlock),
    ] {
        assert_eq!(code(&error), expected);
        let failure = classify(&error);
        assert_eq!(failure, Failure::Retryable, "{expected}");
        assert!(
            failure.is_transient() && !failure.may_have_committed(),
            "{expected}"
        );
    }
    // Their open transactions would keep the schema from being dropped.
    for session in [holder, one, two, left, right] {
        session.close().await.ok();
    }
    db.drop_schema().await;
}

/// A lost connection: retry on a new one, and a write may have committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ended_by_the_server_is_lost_and_a_write_may_have_committed() {
    let mut victim = connection().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .expect("pid");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut connection().await)
        .await
        .expect("terminate");
    let error = sqlx::raw_sql("SELECT 1")
        .execute(&mut victim)
        .await
        .expect_err("the session was ended");
    let failure = classify(&error);
    assert_eq!(failure, Failure::ConnectionLost, "{error}");
    assert!(failure.is_transient() && failure.may_have_committed());
}

/// No connection to be had: the server refuses one (53300), the pool has
/// none to give in time. Nothing was sent; retry later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_to_be_had_is_transient_and_sent_nothing() {
    let role = format!("cqrs_limited_{}", uuid::Uuid::now_v7().simple());
    let mut admin = connection().await;
    sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        .execute(&mut admin)
        .await
        .expect("a role without connections");
    let options: PgConnectOptions = database_url().parse().expect("a URL");
    let refused = PgConnection::connect_with(&options.username(&role))
        .await
        .expect_err("no connection for the role");
    sqlx::raw_sql(&format!("DROP ROLE {role}"))
        .execute(&mut admin)
        .await
        .expect("drop the role");
    assert_eq!(code(&refused), "53300");

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect(&database_url())
        .await
        .expect("a pool of one");
    let _held = pool.acquire().await.expect("the one");
    let timed_out = pool.acquire().await.expect_err("none to give");

    for error in [refused, timed_out] {
        let failure = classify(&error);
        assert_eq!(failure, Failure::NoConnection, "{error}");
        assert!(failure.is_transient() && !failure.may_have_committed());
    }
}

/// What retrying cannot fix: integrity, data, syntax; and a schema behind
/// the store's statements, named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_retrying_cannot_fix_is_permanent() {
    let db = TestStore::new().await;
    let table = two_rows(&db).await;
    for (sql, expected, failure) in [
        (
            format!("INSERT INTO {table} VALUES (1, 0)"),
            "23505",
            Failure::Permanent,
        ),
        ("SELECT 'x'::int".to_owned(), "22P02", Failure::Permanent),
        ("SELEC 1".to_owned(), "42601", Failure::Permanent),
        (
            format!("SELECT * FROM {}", db.table("no_such_table")),
            "42P01",
            Failure::SchemaBehind,
        ),
    ] {
        let error = error_of(&sql).await;
        assert_eq!(code(&error), expected, "{sql}");
        assert_eq!(classify(&error), failure, "{sql}");
        assert!(!classify(&error).is_transient(), "{sql}");
    }
    db.drop_schema().await;
}

/// An append refused by a server that takes no writes (a standby, or a
/// primary being demoted during a failover; here, sessions that are read
/// only) is `StoreError::Unavailable`: transient, nothing written, not an
/// unknown outcome, so a caller retries instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_refused_by_a_read_only_server_is_transient() {
    let db = TestStore::new().await;
    let options: PgConnectOptions = database_url().parse().expect("a URL");
    let read_only = PostgresEventStore::connect_with(
        options.options([("default_transaction_read_only", "on")]),
    )
    .await
    .expect("connect")
    .with_schema(&db.schema)
    .expect("the schema");
    let event = cqrs_tests::fixtures::event("Opened", r#"{"owner": "Ann"}"#);
    let refused = read_only
        .append(
            &StreamId::new("account", "a"),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(refused, StoreError::Unavailable(_)) && refused.is_transient(),
        "{refused:?}"
    );
    assert_eq!(
        db.store
            .stream_version(&StreamId::new("account", "a"))
            .await
            .expect("version"),
        0,
        "nothing was written"
    );
    db.drop_schema().await;
}
