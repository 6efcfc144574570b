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
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::database::Database;
use crate::error::Result;
use crate::schema_name::SchemaName;

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
    (
        20261201000011,
        "request failures",
        include_str!("../migrations/20261201000011_request_failures.sql"),
    ),
    (
        20261207000012,
        "projection layouts",
        include_str!("../migrations/20261207000012_projection_layouts.sql"),
    ),
    (
        20261207000013,
        "inbox",
        include_str!("../migrations/20261207000013_inbox.sql"),
    ),
    (
        20261207000014,
        "inbox dead letter history",
        include_str!("../migrations/20261207000014_inbox_dead_letter_history.sql"),
    ),
    (
        20261207000015,
        "consumer partitions",
        include_str!("../migrations/20261207000015_consumer_partitions.sql"),
    ),
];

/// The embedded migrations as sqlx builds them (with their checksums).
fn embedded() -> impl Iterator<Item = Migration> {
    MIGRATIONS.iter().map(|&(version, description, sql)| {
        Migration::new(
            version,
            Cow::Borrowed(description),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )
    })
}

/// The embedded migrations as an sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>>
    {
        Box::pin(async { Ok(embedded().collect()) })
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

/// One migration: its version (the file name's number) and description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationName {
    /// The version, as in the file name (`20261201000010`).
    pub version: i64,
    /// What it does, as in the file name (`derived columns from the writer`).
    pub description: String,
}

impl std::fmt::Display for MigrationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.description)
    }
}

/// Where a schema stands against the migrations this version of the crate
/// ships ([`PostgresEventStore::schema_status`](crate::PostgresEventStore::schema_status)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// The schema read.
    pub schema: String,
    /// Shipped and applied.
    pub applied: Vec<MigrationName>,
    /// Shipped and not applied yet: [`migrate`](crate::PostgresEventStore::migrate)
    /// applies them. Statements that need them fail with
    /// [`SchemaBehind`](crate::SchemaBehind) until then.
    pub pending: Vec<MigrationName>,
    /// Applied by a newer version of the crate, unknown to this one: the
    /// schema is ahead, as during a rolling deploy once the new version
    /// migrated. This version keeps working: each migration keeps the
    /// release before it working (the changelog says when one does not).
    pub newer: Vec<i64>,
    /// Applied from another text than this version ships (the checksums
    /// differ): the schema may not be what this version expects.
    pub modified: Vec<MigrationName>,
    /// Recorded as started and not finished (sqlx's `success = false`).
    pub failed: Vec<MigrationName>,
}

impl SchemaStatus {
    /// Whether every migration this version ships is applied, as shipped:
    /// nothing pending, modified or failed (newer ones do not count).
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.modified.is_empty() && self.failed.is_empty()
    }
}

impl std::fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[MigrationName]| {
            names
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "schema {}: ", self.schema)?;
        if self.is_current() {
            write!(f, "current ({} migrations applied)", self.applied.len())?;
        } else {
            let mut parts = Vec::new();
            if !self.pending.is_empty() {
                parts.push(format!(
                    "{} pending ({}; apply them with PostgresEventStore::migrate() or `cqrs-admin migrate`)",
                    self.pending.len(),
                    list(&self.pending)
                ));
            }
            if !self.modified.is_empty() {
                parts.push(format!(
                    "applied from another text than this version ships: {}",
                    list(&self.modified)
                ));
            }
            if !self.failed.is_empty() {
                parts.push(format!("failed part-way: {}", list(&self.failed)));
            }
            write!(f, "{}", parts.join("; "))?;
        }
        if !self.newer.is_empty() {
            let newer: Vec<String> = self.newer.iter().map(ToString::to_string).collect();
            write!(
                f,
                "; {} newer than this version ({})",
                newer.len(),
                newer.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Reads what sqlx recorded in `schema` and compares it with the embedded
/// migrations. A schema without the record (never migrated, or not there at
/// all) has every migration pending.
pub(crate) async fn status(db: &Database, schema: &SchemaName) -> Result<SchemaStatus> {
    let mut session = db.session().await?;
    // language=SQL
    let recorded = db
        .query(&format!(
            "SELECT version, success, checksum FROM {}._sqlx_migrations ORDER BY version",
            schema.quoted()
        ))
        .fetch_all(&mut *session)
        .await;
    let rows = match recorded {
        Ok(rows) => {
            session.finish().await?;
            rows
        }
        // 42P01: no such table; 3F000: no such schema. The session (a
        // transaction behind a pooler, aborted now) is dropped, not finished.
        Err(sqlx::Error::Database(error))
            if matches!(error.code().as_deref(), Some("42P01" | "3F000")) =>
        {
            Vec::new()
        }
        Err(error) => return Err(error.into()),
    };
    let mut applied = std::collections::BTreeMap::new();
    for row in &rows {
        let version: i64 = row.try_get("version")?;
        let success: bool = row.try_get("success")?;
        let checksum: Vec<u8> = row.try_get("checksum")?;
        applied.insert(version, (success, checksum));
    }
    let mut status = SchemaStatus {
        schema: schema.as_str().to_owned(),
        applied: Vec::new(),
        pending: Vec::new(),
        newer: Vec::new(),
        modified: Vec::new(),
        failed: Vec::new(),
    };
    for migration in embedded() {
        let name = MigrationName {
            version: migration.version,
            description: migration.description.to_string(),
        };
        match applied.remove(&migration.version) {
            None => status.pending.push(name),
            Some((false, _)) => status.failed.push(name),
            Some((true, checksum)) if checksum != *migration.checksum => {
                status.modified.push(name);
            }
            Some((true, _)) => status.applied.push(name),
        }
    }
    status.newer = applied.into_keys().collect();
    Ok(status)
}
