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
