//! A PostgreSQL store per test, in a schema of its own, so tests run in
//! parallel without seeing each other's events.
//!
//! The database comes from `DATABASE_URL` (set by `scripts/test`, which starts
//! PostgreSQL when none answers). A test that cannot reach it fails: tests that
//! need PostgreSQL never skip.

use cqrskit::postgres::testing;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The URL tests connect to: `DATABASE_URL`, or the local default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A connection pool to the test database, sized for the concurrency tests.
///
/// # Panics
///
/// When the database cannot be reached, saying how to get one.
pub async fn pool() -> PgPool {
    let url = database_url();
    PgPoolOptions::new()
        .max_connections(30)
        .connect(&url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {url}: {error}\n\
                 run `scripts/test`, which starts it, or set DATABASE_URL"
            )
        })
}

/// The published test store (`cqrskit::postgres::testing::TestStore`), on a
/// pool sized for this suite's concurrency tests: the suite uses what it
/// offers applications.
pub struct TestStore(testing::TestStore);

impl TestStore {
    /// Creates a fresh schema and migrates it.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached or the migration fails.
    pub async fn new() -> Self {
        Self(testing::TestStore::on_pool(pool().await).await)
    }

    /// Drops the schema. Called when a test passed; a failed test leaves its
    /// schema behind to be looked at.
    ///
    /// # Panics
    ///
    /// When the database refuses.
    pub async fn drop_schema(self) {
        self.0.drop_schema().await;
    }
}

impl From<testing::TestStore> for TestStore {
    fn from(store: testing::TestStore) -> Self {
        Self(store)
    }
}

impl std::ops::Deref for TestStore {
    type Target = testing::TestStore;

    fn deref(&self) -> &testing::TestStore {
        &self.0
    }
}

/// An append held on a row lock: a transaction of the test holding a
/// stream's first version, and an append of the same version by a store,
/// started and seen waiting on it. Group commit tests hold a store's place
/// for a statement with it.
pub struct HeldAppend {
    /// The transaction holding the row: roll it back to let the append go.
    pub holder: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The waiting append, which succeeds once the holder rolls back.
    pub append: tokio::task::JoinHandle<Result<cqrskit::AppendResult, cqrskit::StoreError>>,
}

impl HeldAppend {
    /// Holds `stream`'s first version in a transaction and starts `store`'s
    /// append of it, returning once that append waits on the lock.
    ///
    /// # Panics
    ///
    /// When the database refuses, or the append never waits.
    pub async fn start(
        db: &TestStore,
        store: std::sync::Arc<cqrskit::postgres::PostgresEventStore>,
        stream: cqrskit::StreamId,
    ) -> Self {
        use cqrskit::{EventStore, ExpectedVersion};
        let mut holder = db.pool().begin().await.expect("begin");
        db.store
            .append_in(
                &mut holder,
                &stream,
                ExpectedVersion::NoStream,
                crate::fixtures::ticks(1),
            )
            .await
            .expect("hold the stream's first version");
        let append = tokio::spawn(async move {
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    crate::fixtures::ticks(1),
                )
                .await
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
            )
            .bind(&db.schema)
            .fetch_one(db.pool())
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                return Self { holder, append };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the append never waited on the held row"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
