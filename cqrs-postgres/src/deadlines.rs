//! Deadlines kept in PostgreSQL, in the store's schema (table `deadlines`):
//! they survive restarts, and runners in several processes share them, each
//! due deadline claimed by one runner at a time. What is due, and how long
//! a claim holds, is decided by the database's clock: runners on hosts
//! whose clocks disagree never deliver early nor take over a claim that
//! still holds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrskit_core::deadline::{Cancellation, Clock, Deadline, DeadlineState, DeadlineStore};
use cqrskit_core::{Metadata, StoreError, StreamId};
use sqlx::Row;
use uuid::Uuid;

use crate::PostgresEventStore;
use crate::error::store_error;

/// A [`DeadlineStore`] in the schema of a [`PostgresEventStore`], sharing
/// its pool: [`PostgresEventStore::deadlines`].
#[derive(Clone)]
pub struct PostgresDeadlines {
    store: PostgresEventStore,
    table: String,
    /// A clock standing in for the database's, in tests.
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for PostgresDeadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDeadlines")
            .field("table", &self.table)
            .field("test_clock", &self.clock.is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresEventStore {
    /// The deadlines kept in this store's schema (created by
    /// [`migrate`](Self::migrate)), due by the database's clock.
    pub fn deadlines(&self) -> PostgresDeadlines {
        PostgresDeadlines {
            table: self.table("deadlines"),
            store: self.clone(),
            clock: None,
        }
    }
}

impl PostgresDeadlines {
    /// The same deadlines, due by `clock` instead of the database's: for
    /// tests that move time by hand ([`ManualClock`]). Never in
    /// production: the point of the database's clock is that every runner
    /// shares it.
    ///
    /// [`ManualClock`]: cqrskit_core::deadline::ManualClock
    pub fn with_test_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The time the test clock shows, `None` for the database's.
    fn test_now(&self) -> Option<DateTime<Utc>> {
        self.clock.as_ref().map(|clock| clock.now())
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

    async fn cancel(&self, id: Uuid) -> Result<Cancellation, StoreError> {
        // A claimed deadline is being delivered: the claim and this update
        // take the row in turn, so one of them wins.
        // language=SQL
        let cancelled = self
            .store
            .database()
            .query(&format!(
                "UPDATE {} SET cancelled_at = now()
             WHERE id = $1 AND delivered_at IS NULL AND cancelled_at IS NULL
               AND claimed_by IS NULL",
                self.table
            ))
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(store_error)?;
        if cancelled.rows_affected() == 1 {
            return Ok(Cancellation::Cancelled);
        }
        match self.state(id).await? {
            // Scheduled between the update and this read: cancel it now.
            Some(DeadlineState::Pending) => Box::pin(self.cancel(id)).await,
            state => Ok(Cancellation::refused(state)),
        }
    }

    async fn claim_due(
        &self,
        owner: &str,
        names: &[String],
        claim: Duration,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError> {
        // Rows another runner is claiming this instant are skipped, not
        // waited for. `now` is the database's (a test clock's in tests).
        // language=SQL
        let rows = self
            .store
            .database()
            .query(&format!(
                "WITH clock AS (SELECT coalesce($1::timestamptz, now()) AS now)
             UPDATE {table} SET claimed_by = $2,
                 claimed_until = (SELECT now FROM clock) + make_interval(secs => $3)
             WHERE id IN (
                 SELECT pending.id FROM {table} AS pending, clock
                 WHERE pending.delivered_at IS NULL AND pending.cancelled_at IS NULL
                   AND pending.name = ANY($5) AND pending.due_at <= clock.now
                   AND (pending.claimed_until IS NULL OR pending.claimed_until < clock.now)
                 ORDER BY pending.due_at LIMIT $4
                 FOR UPDATE OF pending SKIP LOCKED)
             RETURNING id, name, aggregate_type, aggregate_id, due_at, command, metadata",
                table = self.table
            ))
            .bind(self.test_now())
            .bind(owner)
            .bind(claim.as_secs_f64())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(names)
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
        let row = self
            .store
            .database()
            .query(&format!(
            "SELECT cancelled_at IS NOT NULL AS cancelled, delivered_at IS NOT NULL AS delivered,
                    claimed_by IS NOT NULL AS claimed, outcome
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
            } else if column(&row, "claimed")? {
                DeadlineState::Delivering
            } else {
                DeadlineState::Pending
            })
        })
        .transpose()
    }

    async fn until_next_due(&self) -> Result<Option<Duration>, StoreError> {
        // language=SQL
        let seconds: Option<f64> = self
            .store
            .database()
            .query_scalar(&format!(
                "SELECT extract(epoch FROM
                        min(greatest(due_at, claimed_until)) - coalesce($1::timestamptz, now()))::float8
                 FROM {} WHERE delivered_at IS NULL AND cancelled_at IS NULL",
                self.table
            ))
            .bind(self.test_now())
            .fetch_one(self.store.pool())
            .await
            .map_err(store_error)?;
        Ok(seconds.map(|seconds| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)))
    }
}
