//! The inbox and the dead letters of message consumers (the NATS consumer's,
//! or any broker's) in the store's schema: tables `inbox` and
//! `inbox_dead_letters`, made by the migrations.

use std::time::Duration;

use async_trait::async_trait;
use cqrskit_core::StoreError;
use cqrskit_core::inbox::{DeadLetters, Inbox, MessageKey, ParkedMessage};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::PostgresEventStore;
use crate::database::Database;
use crate::error::{sent_write_error, store_error};

/// The store's [`Inbox`] and [`DeadLetters`]: a consumer's handler writes
/// through a `PgConnection` in a transaction that also records the message,
/// in the store's database and schema.
#[derive(Clone, Debug)]
pub struct PostgresInbox {
    pub(crate) db: Database,
    inbox: String,
    dead_letters: String,
    pub(crate) partitions: String,
    pub(crate) instances: String,
}

impl PostgresInbox {
    /// The inbox in `store`'s schema, through its pool.
    pub fn new(store: &PostgresEventStore) -> Self {
        Self {
            db: store.database().clone(),
            inbox: store.table("inbox"),
            dead_letters: store.table("inbox_dead_letters"),
            partitions: store.table("consumer_partitions"),
            instances: store.table("consumer_instances"),
        }
    }

    /// Sets `assignments` (which bind `text` as `$4`) on the dead letter
    /// `key`.
    async fn update_dead_letter(
        &self,
        assignments: &str,
        key: MessageKey<'_>,
        text: &str,
    ) -> Result<(), StoreError> {
        // `assignments` may end in `WHERE <condition> AND`.
        let condition = if assignments.trim_end().ends_with("AND") {
            ""
        } else {
            " WHERE"
        };
        let sql = format!(
            "UPDATE {} SET {assignments}{condition}
             consumer = $1 AND source = $2 AND message_id = $3",
            self.dead_letters
        );
        self.alone(async |connection| {
            self.db
                .query(&sql)
                .bind(key.consumer)
                .bind(key.source)
                .bind(key.id)
                .bind(text)
                .execute(connection)
                .await
                .map(drop)
        })
        .await
    }

    /// Runs `statement` on a connection of its own (a transaction of its
    /// own behind a pooler).
    pub(crate) async fn alone<T>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut session = self.db.session().await.map_err(store_error)?;
        let done = statement(&mut session).await.map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        Ok(done)
    }
}

#[async_trait]
impl Inbox for PostgresInbox {
    type Connection = PgConnection;
    type Transaction = Transaction<'static, Postgres>;

    fn connection(transaction: &mut Self::Transaction) -> &mut PgConnection {
        transaction
    }

    async fn begin(&self) -> Result<Self::Transaction, StoreError> {
        self.db.pool().begin().await.map_err(store_error)
    }

    async fn commit(&self, transaction: Self::Transaction) -> Result<(), StoreError> {
        transaction.commit().await.map_err(sent_write_error)
    }

    /// A record an earlier version wrote without the source counts too.
    async fn record(
        &self,
        transaction: &mut Self::Transaction,
        key: MessageKey<'_>,
    ) -> Result<bool, StoreError> {
        let table = &self.inbox;
        let recorded = self
            .db
            .query(&format!(
                "INSERT INTO {table} (consumer, source, message_id)
                 SELECT $1, $2, $3
                 WHERE NOT EXISTS (
                     SELECT 1 FROM {table} WHERE consumer = $1 AND source = '' AND message_id = $3)
                 ON CONFLICT DO NOTHING"
            ))
            .bind(key.consumer)
            .bind(key.source)
            .bind(key.id)
            .execute(&mut **transaction)
            .await
            .map_err(store_error)?;
        Ok(recorded.rows_affected() == 1)
    }

    async fn prune(&self, consumer: &str, age: Duration) -> Result<u64, StoreError> {
        // Past a century is as good as forever, and fits an interval.
        let century = chrono::Duration::days(36_525);
        let age = chrono::Duration::from_std(age).map_or(century, |age| age.min(century));
        let sql = format!(
            "DELETE FROM {} WHERE consumer = $1 AND processed_at < now() - $2::interval",
            self.inbox
        );
        self.alone(async |connection| {
            let pruned = self
                .db
                .query(&sql)
                .bind(consumer)
                .bind(age)
                .execute(connection)
                .await?;
            Ok(pruned.rows_affected())
        })
        .await
    }
}

/// Headers as stored: a JSON object of arrays, one entry per name.
fn headers_to_json(headers: &[(String, String)]) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        let values = object
            .entry(name.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = values {
            values.push(value.as_str().into());
        }
    }
    serde_json::Value::Object(object)
}

/// Headers as kept: each stored value, in order.
pub(crate) fn headers_from_json(stored: &serde_json::Value) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (name, values) in stored.as_object().into_iter().flatten() {
        for value in values.as_array().into_iter().flatten() {
            headers.push((name.clone(), value.as_str().unwrap_or_default().to_owned()));
        }
    }
    headers
}

/// A dead letter's row.
type Row = (
    String,
    String,
    String,
    sqlx::types::Json<serde_json::Value>,
    Vec<u8>,
    String,
    i64,
    Option<String>,
);

/// The columns of a [`Row`].
const COLUMNS: &str =
    "source, message_id, subject, headers, body, reason, deliveries, publish_error";

fn parked_of(row: Row) -> ParkedMessage {
    let (source, message_id, subject, headers, body, reason, deliveries, publish_error) = row;
    ParkedMessage {
        source,
        message_id,
        subject,
        headers: headers_from_json(&headers.0),
        body,
        reason,
        deliveries: u64::try_from(deliveries).unwrap_or_default(),
        publish_error,
    }
}

#[async_trait]
impl DeadLetters for PostgresInbox {
    async fn park(&self, consumer: &str, message: &ParkedMessage) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {0} AS d (consumer, source, message_id, subject, headers, body, reason,
                             deliveries, publish_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (consumer, source, message_id) DO UPDATE
                SET reason = EXCLUDED.reason, deliveries = EXCLUDED.deliveries,
                    subject = EXCLUDED.subject, headers = EXCLUDED.headers, body = EXCLUDED.body,
                    publish_error = EXCLUDED.publish_error, replay_error = NULL,
                    parked_at = now(), resolved_at = NULL, resolution = NULL
                WHERE d.resolved_at IS NOT NULL AND d.resolution = 'replayed'",
            self.dead_letters
        );
        let deliveries = i64::try_from(message.deliveries).unwrap_or(i64::MAX);
        self.alone(async |connection| {
            self.db
                .query(&sql)
                .bind(consumer)
                .bind(&message.source)
                .bind(&message.message_id)
                .bind(&message.subject)
                .bind(sqlx::types::Json(headers_to_json(&message.headers)))
                .bind(&message.body)
                .bind(&message.reason)
                .bind(deliveries)
                .bind(&message.publish_error)
                .execute(connection)
                .await
                .map(drop)
        })
        .await
    }

    async fn publish_failed(&self, key: MessageKey<'_>, error: &str) -> Result<(), StoreError> {
        self.update_dead_letter("publish_error = $4", key, error)
            .await
    }

    async fn parked_reason(&self, key: MessageKey<'_>) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "SELECT reason FROM {} WHERE consumer = $1 AND source = $2 AND message_id = $3
                AND (resolved_at IS NULL OR resolution = 'skipped')",
            self.dead_letters
        );
        self.alone(async |connection| {
            self.db
                .query_scalar(&sql)
                .bind(key.consumer)
                .bind(key.source)
                .bind(key.id)
                .fetch_optional(connection)
                .await
        })
        .await
    }

    async fn parked(&self, consumer: &str) -> Result<Vec<ParkedMessage>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE consumer = $1 AND resolved_at IS NULL
             ORDER BY parked_at, source, message_id",
            self.dead_letters
        );
        let rows: Vec<Row> = self
            .alone(async |connection| {
                sqlx::query_as(&sql)
                    .persistent(!self.db.pooled())
                    .bind(consumer)
                    .fetch_all(connection)
                    .await
            })
            .await?;
        Ok(rows.into_iter().map(parked_of).collect())
    }

    async fn unpark(
        &self,
        transaction: &mut Self::Transaction,
        key: MessageKey<'_>,
    ) -> Result<Option<ParkedMessage>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE {} SET resolved_at = now(), resolution = 'replayed',
                    replays = replays + 1, replay_requested_at = NULL, replay_error = NULL
             WHERE consumer = $1 AND source = $2 AND message_id = $3 AND resolved_at IS NULL
             RETURNING {COLUMNS}",
            self.dead_letters
        ))
        .persistent(!self.db.pooled())
        .bind(key.consumer)
        .bind(key.source)
        .bind(key.id)
        .fetch_optional(&mut **transaction)
        .await
        .map_err(store_error)?;
        Ok(row.map(parked_of))
    }

    async fn replays_requested(&self, consumer: &str) -> Result<Vec<(String, String)>, StoreError> {
        let sql = format!(
            "SELECT source, message_id FROM {} WHERE consumer = $1
                AND replay_requested_at IS NOT NULL AND resolved_at IS NULL
             ORDER BY replay_requested_at, source, message_id",
            self.dead_letters
        );
        self.alone(async |connection| {
            sqlx::query_as(&sql)
                .persistent(!self.db.pooled())
                .bind(consumer)
                .fetch_all(connection)
                .await
        })
        .await
    }

    async fn replay_failed(&self, key: MessageKey<'_>, error: &str) -> Result<(), StoreError> {
        // Only while open: a replay whose commit was lost but happened, or
        // an operator's skip that waited for the replay's lock, closed it.
        self.update_dead_letter(
            "replay_requested_at = NULL, replays = replays + 1, replay_error = $4
             WHERE resolved_at IS NULL AND",
            key,
            error,
        )
        .await
    }
}
