//! Deadlines kept in PostgreSQL, in the store's schema (table `deadlines`):
//! they survive restarts, and runners in several processes share them, each
//! due deadline claimed by one runner at a time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrskit_core::deadline::{Deadline, DeadlineState, DeadlineStore};
use cqrskit_core::{Metadata, StoreError, StreamId};
use sqlx::Row;
use uuid::Uuid;

use crate::PostgresEventStore;
use crate::error::store_error;

/// A [`DeadlineStore`] in the schema of a [`PostgresEventStore`], sharing
/// its pool: [`PostgresEventStore::deadlines`].
#[derive(Clone, Debug)]
pub struct PostgresDeadlines {
    store: PostgresEventStore,
    table: String,
}

impl PostgresEventStore {
    /// The deadlines kept in this store's schema (created by
    /// [`migrate`](Self::migrate)).
    pub fn deadlines(&self) -> PostgresDeadlines {
        PostgresDeadlines {
            table: self.table("deadlines"),
            store: self.clone(),
        }
    }
}

fn column<T>(row: &sqlx::postgres::PgRow, name: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(store_error)
}

fn deadline(row: &sqlx::postgres::PgRow) -> Result<Deadline, StoreError> {
    let metadata: sqlx::types::Json<Metadata> = column(row, "metadata")?;
    let command: sqlx::types::Json<serde_json::Value> = column(row, "command")?;
    Ok(Deadline {
        id: column(row, "id")?,
        name: column(row, "name")?,
        stream: StreamId::new(
            column::<String>(row, "aggregate_type")?,
            column::<String>(row, "aggregate_id")?,
        ),
        due_at: column(row, "due_at")?,
        command: command.0,
        metadata: metadata.0,
    })
}

#[async_trait]
impl DeadlineStore for PostgresDeadlines {
    async fn schedule(&self, deadline: &Deadline) -> Result<bool, StoreError> {
        // language=SQL
        let inserted = self
            .store
            .database()
            .query(&format!(
                "INSERT INTO {} (id, name, aggregate_type, aggregate_id, due_at, command, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                self.table
            ))
            .bind(deadline.id)
            .bind(&deadline.name)
            .bind(&deadline.stream.aggregate_type)
            .bind(&deadline.stream.aggregate_id)
            .bind(deadline.due_at)
            .bind(sqlx::types::Json(&deadline.command))
            .bind(sqlx::types::Json(&deadline.metadata))
            .execute(self.store.pool())
            .await
            .map_err(store_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        // language=SQL
        let cancelled = self
            .store
            .database()
            .query(&format!(
                "UPDATE {} SET cancelled_at = now()
             WHERE id = $1 AND delivered_at IS NULL AND cancelled_at IS NULL",
                self.table
            ))
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(store_error)?;
        Ok(cancelled.rows_affected() == 1)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        claim: Duration,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError> {
        // Rows another runner is claiming this instant are skipped, not
        // waited for.
        // language=SQL
        let rows = self
            .store
            .database()
            .query(&format!(
                "UPDATE {table} SET claimed_by = $2, claimed_until = $1 + make_interval(secs => $3)
             WHERE id IN (
                 SELECT id FROM {table}
                 WHERE delivered_at IS NULL AND cancelled_at IS NULL AND due_at <= $1
                   AND (claimed_until IS NULL OR claimed_until < $1)
                 ORDER BY due_at LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, name, aggregate_type, aggregate_id, due_at, command, metadata",
                table = self.table
            ))
            .bind(now)
            .bind(owner)
            .bind(claim.as_secs_f64())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.store.pool())
            .await
            .map_err(store_error)?;
        let mut claimed = rows.iter().map(deadline).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|deadline| deadline.due_at);
        Ok(claimed)
    }

    async fn complete(&self, id: Uuid, owner: &str, outcome: &str) -> Result<bool, StoreError> {
        // language=SQL
        let completed = self.store.database().query(&format!(
            "UPDATE {} SET delivered_at = now(), outcome = $3, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL AND cancelled_at IS NULL",
            self.table
        ))
        .bind(id)
        .bind(owner)
        .bind(outcome)
        .execute(self.store.pool())
        .await
        .map_err(store_error)?;
        Ok(completed.rows_affected() == 1)
    }

    async fn state(&self, id: Uuid) -> Result<Option<DeadlineState>, StoreError> {
        // language=SQL
        let row = self.store.database().query(&format!(
            "SELECT cancelled_at IS NOT NULL AS cancelled, delivered_at IS NOT NULL AS delivered, outcome
             FROM {} WHERE id = $1",
            self.table
        ))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(store_error)?;
        row.map(|row| {
            Ok(if column(&row, "delivered")? {
                DeadlineState::Delivered {
                    outcome: column::<Option<String>>(&row, "outcome")?.unwrap_or_default(),
                }
            } else if column(&row, "cancelled")? {
                DeadlineState::Cancelled
            } else {
                DeadlineState::Pending
            })
        })
        .transpose()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // language=SQL
        self.store
            .database()
            .query_scalar(&format!(
                "SELECT min(due_at) FROM {} WHERE delivered_at IS NULL AND cancelled_at IS NULL",
                self.table
            ))
            .fetch_one(self.store.pool())
            .await
            .map_err(store_error)
    }
}
