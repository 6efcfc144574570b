//! The schema, shipped as sqlx migrations embedded in the crate.
//!
//! The files in `migrations/` are in sqlx's format, so a team that runs
//! migrations itself can apply them with `sqlx migrate run --source
//! cqrs-postgres/migrations` (with `search_path` set to the schema) instead of
//! calling [`PostgresEventStore::migrate`](crate::PostgresEventStore::migrate).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{Connection, PgConnection, PgPool};

use crate::error::Result;
use crate::schema::SchemaName;

/// The embedded migration files, oldest first: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20261124000001,
        "event store",
        include_str!("../migrations/20261124000001_event_store.sql"),
    ),
    (
        20261124000002,
        "projections",
        include_str!("../migrations/20261124000002_projections.sql"),
    ),
    (
        20261124000003,
        "notify after commit",
        include_str!("../migrations/20261124000003_notify_after_commit.sql"),
    ),
    (
        20261124000004,
        "time range brin",
        include_str!("../migrations/20261124000004_time_range_brin.sql"),
    ),
    (
        20261130000005,
        "projection subscriptions",
        include_str!("../migrations/20261130000005_projection_subscriptions.sql"),
    ),
    (
        20261130000006,
        "append tags",
        include_str!("../migrations/20261130000006_append_tags.sql"),
    ),
    (
        20261201000007,
        "slices",
        include_str!("../migrations/20261201000007_slices.sql"),
    ),
    (
        20261201000008,
        "deadlines",
        include_str!("../migrations/20261201000008_deadlines.sql"),
    ),
    (
        20261201000009,
        "operator requests",
        include_str!("../migrations/20261201000009_operator_requests.sql"),
    ),
    (
        20261201000010,
        "derived columns from the writer",
        include_str!("../migrations/20261201000010_derived_columns_from_the_writer.sql"),
    ),
];

/// The embedded migrations as an sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>>
    {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The first key of the advisory lock `run` takes (PostgreSQL's two-key
/// form, a key space apart from the one-key lock sqlx's migrator takes); the
/// second is derived from the schema name. The bytes spell `cqrs`.
const LOCK_CLASS: i32 = 0x6371_7273;

/// Creates `schema` if needed and applies every migration not yet applied
/// there. Safe to call from several processes at once: they take turns on an
/// advisory lock of the schema.
pub(crate) async fn run(pool: &PgPool, schema: &SchemaName) -> Result<()> {
    let migrator = Migrator::new(Embedded).await?;
    // A connection of its own: its search_path points at the schema, and it is
    // closed afterwards rather than handed back to the pool with that setting
    // or the lock. Closing it releases the lock too when a step failed.
    let mut connection = pool.acquire().await?.detach();
    let result = migrate_locked(&mut connection, &migrator, schema).await;
    connection.close().await?;
    result
}

async fn migrate_locked(
    connection: &mut PgConnection,
    migrator: &Migrator,
    schema: &SchemaName,
) -> Result<()> {
    // sqlx's migrator locks only once the schema exists: two sessions running
    // `CREATE SCHEMA IF NOT EXISTS` at once both find it missing and one of
    // them fails on the catalog's unique index. The schema's lock is taken
    // first, so the create and the migrations run one session at a time.
    let key = lock_key(schema);
    // language=SQL
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(key)
        .execute(&mut *connection)
        .await?;
    // language=SQL
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()))
        .execute(&mut *connection)
        .await?;
    // language=SQL
    sqlx::query(&format!("SET search_path TO {}", schema.quoted()))
        .execute(&mut *connection)
        .await?;
    migrator.run_direct(&mut *connection).await?;
    // language=SQL
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(key)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// The schema's half of the lock's key. Two schemas sharing one only take
/// turns needlessly.
fn lock_key(schema: &SchemaName) -> i32 {
    let fingerprint = schema.fingerprint();
    // Folded so every bit of the hash counts; `as` keeps the low 32 bits.
    (fingerprint ^ (fingerprint >> 32)) as i32
}
