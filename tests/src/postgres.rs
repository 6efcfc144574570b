//! A PostgreSQL store per test, in a schema of its own, so tests run in
//! parallel without seeing each other's events.
//!
//! The database comes from `DATABASE_URL` (set by `scripts/test`, which starts
//! PostgreSQL when none answers). A test that cannot reach it fails: tests that
//! need PostgreSQL never skip.

use std::sync::Arc;

use cqrskit::postgres::PostgresEventStore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

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

/// A migrated store in a fresh schema.
pub struct TestStore {
    /// The store.
    pub store: PostgresEventStore,
    /// Its schema's name.
    pub schema: String,
}

impl TestStore {
    /// Creates a fresh schema and migrates it.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached or the migration fails.
    pub async fn new() -> Self {
        let schema = format!("test_{}", Uuid::now_v7().simple());
        let store = PostgresEventStore::from_pool(pool().await)
            .with_schema(&schema)
            .expect("generated schema names are valid");
        store.migrate().await.expect("migrations apply");
        Self { store, schema }
    }

    /// The store as the conformance scenarios take it.
    pub fn shared(&self) -> Arc<dyn cqrskit::EventStore> {
        Arc::new(self.store.clone())
    }

    /// The store's pool.
    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// The schema-qualified name of one of the store's tables.
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema)
    }

    /// Drops the schema. Called when a test passed; a failed test leaves its
    /// schema behind to be looked at.
    ///
    /// # Panics
    ///
    /// When the database refuses.
    pub async fn drop_schema(self) {
        // language=SQL
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(self.store.pool())
            .await
            .expect("drop the test schema");
    }
}
