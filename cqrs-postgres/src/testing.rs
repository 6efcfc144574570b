//! Helpers for an application's own tests against PostgreSQL (feature
//! `testing`): a store in a fresh schema per test, so tests run in parallel
//! without seeing each other's events, and a projection run until it has
//! applied everything appended so far.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn example<P>(projector: Arc<P>) where P: cqrskit::Projector<cqrskit::postgres::sqlx::PgConnection> + 'static {
//! use cqrskit::postgres::ProjectionRunner;
//! use cqrskit::postgres::testing::{TestStore, caught_up};
//!
//! let db = TestStore::new().await; // DATABASE_URL, schema test_<uuid>
//! // ... execute commands against db.shared() ...
//! let runner = ProjectionRunner::new(db.store.clone(), projector);
//! caught_up(&runner).await; // every event appended so far is applied
//! // ... assert on the read model, in db.schema ...
//! db.drop_schema().await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use cqrskit_core::{EventStore, Projector};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{PostgresEventStore, ProjectionRunner};

/// How long [`caught_up`] waits before it fails the test.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// A migrated store in a schema of its own, `test_<uuid>`.
///
/// Drop it with [`drop_schema`](Self::drop_schema) at the end of a test that
/// passed; a failed test leaves its schema behind to be looked at.
#[derive(Clone, Debug)]
pub struct TestStore {
    /// The store.
    pub store: PostgresEventStore,
    /// Its schema's name.
    pub schema: String,
}

impl TestStore {
    /// A store on the database named by `DATABASE_URL`.
    ///
    /// # Panics
    ///
    /// When `DATABASE_URL` is not set or the database cannot be reached (a
    /// test that needs PostgreSQL fails rather than skipping), or the
    /// migration fails.
    pub async fn new() -> Self {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!("set DATABASE_URL to the PostgreSQL database tests may use")
        });
        let store = PostgresEventStore::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL is not reachable at {url}: {error}"));
        Self::on_pool(store.pool().clone()).await
    }

    /// A store on `pool` (sized for the test's concurrency, say).
    ///
    /// # Panics
    ///
    /// When the migration fails.
    pub async fn on_pool(pool: PgPool) -> Self {
        let schema = format!("test_{}", Uuid::now_v7().simple());
        let store = PostgresEventStore::from_pool(pool)
            .with_schema(&schema)
            .expect("generated schema names are valid");
        store
            .migrate()
            .await
            .unwrap_or_else(|error| panic!("migrating test schema {schema}: {error}"));
        Self { store, schema }
    }

    /// The store behind an `Arc<dyn EventStore>`, as a `CommandPipeline`
    /// takes it.
    pub fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    /// The store's pool, for the test's own queries.
    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// The schema-qualified name of a table in the test's schema (a read
    /// model's, or the store's own).
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema)
    }

    /// Drops the schema and everything in it.
    ///
    /// # Panics
    ///
    /// When the database refuses.
    pub async fn drop_schema(self) {
        // language=SQL
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|error| panic!("dropping test schema {}: {error}", self.schema));
    }
}

/// Runs `runner`'s projection until it has applied every event of its types
/// committed so far (waiting for appends still in flight), taking the lease
/// first, and returns how many events it applied.
///
/// # Panics
///
/// When the runner fails (a projector error under a policy that stops, a
/// lost database), or has not caught up within 30 s: a test helper says why
/// the test cannot go on.
pub async fn caught_up<P>(runner: &ProjectionRunner<P>) -> usize
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
    let mut applied = 0;
    loop {
        let leased = runner
            .acquire_lease()
            .await
            .unwrap_or_else(|error| panic!("projection {}: {error}", runner.name()));
        if leased {
            applied += runner
                .catch_up()
                .await
                .unwrap_or_else(|error| panic!("projection {}: {error}", runner.name()));
            let lag = runner
                .lag()
                .await
                .unwrap_or_else(|error| panic!("projection {}: {error}", runner.name()));
            if lag.events == 0 {
                return applied;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projection {} has not caught up within {CATCH_UP_LIMIT:?} (lease taken: {leased})",
            runner.name()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
