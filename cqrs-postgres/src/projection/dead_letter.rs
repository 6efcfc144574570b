//! Events a projection parked after its failure policy gave up on them.

use chrono::{DateTime, Utc};
use cqrskit_core::{Position, StoredEvent, StreamId};
use sqlx::{PgConnection, Row};

use crate::database::Database;
use uuid::Uuid;

use super::projection_row::as_i64;

/// A parked event, with why it was parked.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The dead letter's id.
    pub id: i64,
    /// The projection that parked it.
    pub projection: String,
    /// The event.
    pub event_id: Uuid,
    /// Its log position.
    pub position: Position,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored type name.
    pub event_type: String,
    /// The last error.
    pub error: String,
    /// How many times it was tried, replays included.
    pub attempts: u32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// When it was closed, if it was: a replay applied it, or an operator
    /// skipped it (`skipped`).
    pub resolved_at: Option<DateTime<Utc>>,
    /// Whether an operator gave up on it (`cqrs-admin dead-letters skip`)
    /// rather than a replay applying it.
    pub skipped: bool,
}

fn dead_letter(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, sqlx::Error> {
    let transaction: i64 = row.try_get("transaction_id")?;
    let sequence: i64 = row.try_get("sequence")?;
    let version: i64 = row.try_get("version")?;
    let attempts: i32 = row.try_get("attempts")?;
    Ok(DeadLetter {
        id: row.try_get("id")?,
        projection: row.try_get("projection")?,
        event_id: row.try_get("event_id")?,
        position: Position::new(
            transaction.max(0).unsigned_abs(),
            sequence.max(0).unsigned_abs(),
        ),
        stream: StreamId::new(
            row.try_get::<String, _>("aggregate_type")?,
            row.try_get::<String, _>("aggregate_id")?,
        ),
        version: version.max(0).unsigned_abs(),
        event_type: row.try_get("event_type")?,
        error: row.try_get("error")?,
        attempts: attempts.max(0).unsigned_abs(),
        parked_at: row.try_get("parked_at")?,
        resolved_at: row.try_get("resolved_at")?,
        skipped: row.try_get::<Option<String>, _>("resolution")?.as_deref() == Some("skipped"),
    })
}

/// The dead-letter table of a store's projections.
#[derive(Clone, Copy)]
pub(crate) struct DeadLetterTable<'a> {
    pub(crate) db: &'a Database,
    pub(crate) table: &'a str,
}

impl DeadLetterTable<'_> {
    /// Records `event` as parked by `projection`, reopening its dead letter if
    /// one is left from an earlier run.
    pub(crate) async fn park(
        &self,
        connection: &mut PgConnection,
        projection: &str,
        event: &StoredEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), sqlx::Error> {
        let (db, table) = (self.db, self.table);
        // A rebuild keeps resolved dead letters, so it can meet one of their events
        // failing again: that reopens the row. The attempts start over, as the old
        // count belonged to a parking that was resolved.
        // language=SQL
        db.query(&format!(
            "INSERT INTO {table}
                 (projection, event_id, transaction_id, sequence, aggregate_type, aggregate_id,
                  version, event_type, error, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT ON CONSTRAINT dead_letters_projection_event_key DO UPDATE
             SET transaction_id = EXCLUDED.transaction_id,
                 sequence = EXCLUDED.sequence,
                 aggregate_type = EXCLUDED.aggregate_type,
                 aggregate_id = EXCLUDED.aggregate_id,
                 version = EXCLUDED.version,
                 event_type = EXCLUDED.event_type,
                 error = EXCLUDED.error,
                 attempts = EXCLUDED.attempts,
                 parked_at = now(),
                 resolved_at = NULL,
                 resolution = NULL"
        ))
        .bind(projection)
        .bind(event.event_id)
        .bind(as_i64(event.position.transaction))
        .bind(as_i64(event.position.sequence))
        .bind(&event.stream.aggregate_type)
        .bind(&event.stream.aggregate_id)
        .bind(as_i64(event.version))
        .bind(&event.event_type)
        .bind(error)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    /// The dead letters of `projection`, oldest first; unresolved only unless
    /// `include_resolved`.
    pub(crate) async fn list(
        &self,
        projection: &str,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, sqlx::Error> {
        let (db, table) = (self.db, self.table);
        let mut session = db.session().await?;
        // language=SQL
        let rows = db
            .query(&format!(
            "SELECT id, projection, event_id, transaction_id, sequence, aggregate_type, aggregate_id,
                    version, event_type, error, attempts, parked_at, resolved_at, resolution
             FROM {table} WHERE projection = $1 AND ($2 OR resolved_at IS NULL)
             ORDER BY transaction_id, sequence, id"
        ))
            .bind(projection)
            .bind(include_resolved)
            .fetch_all(&mut *session)
            .await?;
        session.finish().await?;
        rows.iter().map(dead_letter).collect()
    }

    /// One dead letter, open or closed.
    pub(crate) async fn by_id(&self, id: i64) -> Result<Option<DeadLetter>, sqlx::Error> {
        let (db, table) = (self.db, self.table);
        let mut session = db.session().await?;
        // language=SQL
        let row = db
            .query(&format!(
                "SELECT id, projection, event_id, transaction_id, sequence, aggregate_type, aggregate_id,
                    version, event_type, error, attempts, parked_at, resolved_at, resolution
             FROM {table} WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.as_ref().map(dead_letter).transpose()
    }

    /// Closes an open dead letter as skipped; `false` when none is open with
    /// that id.
    pub(crate) async fn skip(&self, id: i64) -> Result<bool, sqlx::Error> {
        let (db, table) = (self.db, self.table);
        let mut session = db.session().await?;
        // language=SQL
        let skipped = db
            .query(&format!(
                "UPDATE {table} SET resolved_at = now(), resolution = 'skipped'
                 WHERE id = $1 AND resolved_at IS NULL"
            ))
            .bind(id)
            .execute(&mut *session)
            .await?
            .rows_affected();
        session.finish().await?;
        Ok(skipped == 1)
    }

    /// Locks one unresolved dead letter for a replay; `None` if it was resolved
    /// meanwhile.
    pub(crate) async fn lock_open(
        &self,
        connection: &mut PgConnection,
        id: i64,
    ) -> Result<Option<DeadLetter>, sqlx::Error> {
        let (db, table) = (self.db, self.table);
        // language=SQL
        let row = db
            .query(&format!(
            "SELECT id, projection, event_id, transaction_id, sequence, aggregate_type, aggregate_id,
                    version, event_type, error, attempts, parked_at, resolved_at, resolution
             FROM {table} WHERE id = $1 AND resolved_at IS NULL FOR UPDATE"
        ))
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?;
        row.as_ref().map(dead_letter).transpose()
    }

    /// Records the outcome of one replay attempt.
    pub(crate) async fn record_replay(
        &self,
        connection: &mut PgConnection,
        id: i64,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let (db, table) = (self.db, self.table);
        // language=SQL
        db.query(&format!(
            "UPDATE {table}
             SET attempts = attempts + 1,
                 error = coalesce($2, error),
                 resolved_at = CASE WHEN $2 IS NULL THEN now() ELSE NULL END
             WHERE id = $1 AND ($2 IS NULL OR resolved_at IS NULL)"
        ))
        .bind(id)
        .bind(error)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    /// The streams of a projection's unresolved dead letters.
    pub(crate) async fn open_streams(
        &self,
        connection: &mut PgConnection,
        projection: &str,
    ) -> Result<std::collections::HashSet<StreamId>, sqlx::Error> {
        let (db, table) = (self.db, self.table);
        // language=SQL
        let rows = db
            .query(&format!(
                "SELECT DISTINCT aggregate_type, aggregate_id FROM {table}
                 WHERE projection = $1 AND resolved_at IS NULL"
            ))
            .bind(projection)
            .fetch_all(connection)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StreamId::new(
                    row.try_get::<String, _>(0)?,
                    row.try_get::<String, _>(1)?,
                ))
            })
            .collect()
    }

    /// Forgets a projection's unresolved dead letters (a rebuild meets those
    /// events again).
    pub(crate) async fn clear_open(
        &self,
        connection: &mut PgConnection,
        projection: &str,
    ) -> Result<(), sqlx::Error> {
        let (db, table) = (self.db, self.table);
        // language=SQL
        db.query(&format!(
            "DELETE FROM {table} WHERE projection = $1 AND resolved_at IS NULL"
        ))
        .bind(projection)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}
