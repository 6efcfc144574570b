//! The leases on split consumers' partitions, in the store's schema
//! (tables `consumer_partitions` and `consumer_instances`, made by the
//! migrations), for [`PostgresInbox`].
//!
//! A handler's transaction proves its lease with `FOR KEY SHARE` on the
//! partition's row: renewals (which change no key) go on beside it, while a
//! takeover (`FOR UPDATE SKIP LOCKED`) skips the row until the transaction
//! ends, and then finds the token it must move.

use std::time::Duration;

use async_trait::async_trait;
use cqrskit_core::StoreError;
use cqrskit_core::inbox::{PartitionKey, PartitionLeases};
use sqlx::Row;

use crate::PostgresInbox;
use crate::error::store_error;

/// `duration` in seconds, as the statements take it.
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[async_trait]
impl PartitionLeases for PostgresInbox {
    async fn partitioning(&self, consumer: &str, partitions: u32) -> Result<u32, StoreError> {
        let table = &self.partitions;
        // language=SQL
        let sql = format!(
            "INSERT INTO {table} (consumer, partition, partitions)
             SELECT $1, index, $2 FROM generate_series(0, $2 - 1) AS index
             WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE consumer = $1)
             ON CONFLICT DO NOTHING"
        );
        let count = i32::try_from(partitions).unwrap_or(i32::MAX);
        let recorded = self
            .alone(async |connection| {
                self.db
                    .query(&sql)
                    .bind(consumer)
                    .bind(count)
                    .execute(&mut *connection)
                    .await?;
                let recorded: i32 = self
                    .db
                    .query(&format!(
                        "SELECT max(partitions) FROM {table} WHERE consumer = $1"
                    ))
                    .bind(consumer)
                    .fetch_one(&mut *connection)
                    .await?
                    .try_get(0)?;
                Ok(recorded)
            })
            .await?;
        Ok(u32::try_from(recorded).unwrap_or_default())
    }

    async fn heartbeat(
        &self,
        consumer: &str,
        owner: &str,
        within: Duration,
    ) -> Result<usize, StoreError> {
        let table = &self.instances;
        // language=SQL
        let sql = format!(
            "WITH seen AS (
                 INSERT INTO {table} (consumer, instance) VALUES ($1, $2)
                 ON CONFLICT (consumer, instance) DO UPDATE SET seen_at = now()
             )
             SELECT count(*) FROM {table}
             WHERE consumer = $1 AND instance <> $2
               AND seen_at > now() - make_interval(secs => $3)"
        );
        let others: i64 = self
            .alone(async |connection| {
                self.db
                    .query(&sql)
                    .bind(consumer)
                    .bind(owner)
                    .bind(seconds(within))
                    .fetch_one(connection)
                    .await?
                    .try_get(0)
            })
            .await?;
        Ok(usize::try_from(others).unwrap_or_default() + 1)
    }

    async fn leave(&self, consumer: &str, owner: &str) -> Result<(), StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE consumer = $1 AND instance = $2",
            self.instances
        );
        self.alone(async |connection| {
            self.db
                .query(&sql)
                .bind(consumer)
                .bind(owner)
                .execute(connection)
                .await
                .map(drop)
        })
        .await
    }

    async fn acquire(
        &self,
        key: PartitionKey<'_>,
        duration: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let table = &self.partitions;
        // language=SQL
        let sql = format!(
            "WITH free AS (
                 SELECT consumer, partition FROM {table}
                 WHERE consumer = $1 AND partition = $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE {table} p
             SET owner = $3, lease_expires_at = now() + make_interval(secs => $4),
                 fencing_token = p.fencing_token + 1, updated_at = now()
             FROM free
             WHERE p.consumer = free.consumer AND p.partition = free.partition
               AND (p.owner IS NULL OR p.owner = $3 OR p.lease_expires_at < now())
             RETURNING p.fencing_token"
        );
        self.alone(async |connection| {
            let row = self
                .db
                .query(&sql)
                .bind(key.consumer)
                .bind(partition(key))
                .bind(key.owner)
                .bind(seconds(duration))
                .fetch_optional(connection)
                .await?;
            row.map(|row| row.try_get(0)).transpose()
        })
        .await
    }

    async fn renew(
        &self,
        key: PartitionKey<'_>,
        token: i64,
        duration: Duration,
    ) -> Result<bool, StoreError> {
        // language=SQL
        let sql = format!(
            "UPDATE {} SET lease_expires_at = now() + make_interval(secs => $5), updated_at = now()
             WHERE consumer = $1 AND partition = $2 AND owner = $3 AND fencing_token = $4",
            self.partitions
        );
        self.alone(async |connection| {
            let renewed = self
                .db
                .query(&sql)
                .bind(key.consumer)
                .bind(partition(key))
                .bind(key.owner)
                .bind(token)
                .bind(seconds(duration))
                .execute(connection)
                .await?;
            Ok(renewed.rows_affected() == 1)
        })
        .await
    }

    async fn release(&self, key: PartitionKey<'_>, token: i64) -> Result<(), StoreError> {
        // language=SQL
        let sql = format!(
            "UPDATE {} SET owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE consumer = $1 AND partition = $2 AND owner = $3 AND fencing_token = $4",
            self.partitions
        );
        self.alone(async |connection| {
            self.db
                .query(&sql)
                .bind(key.consumer)
                .bind(partition(key))
                .bind(key.owner)
                .bind(token)
                .execute(connection)
                .await
                .map(drop)
        })
        .await
    }

    async fn hold(
        &self,
        transaction: &mut Self::Transaction,
        key: PartitionKey<'_>,
        token: i64,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        // language=SQL
        let sql = format!(
            "SELECT 1 FROM {} p,
                 set_config('idle_in_transaction_session_timeout', $5, true) AS bound
             WHERE consumer = $1 AND partition = $2 AND owner = $3 AND fencing_token = $4
               AND lease_expires_at > now()
             FOR KEY SHARE OF p",
            self.partitions
        );
        let bound = bound.as_millis().clamp(1, i32::MAX.unsigned_abs().into());
        let held = self
            .db
            .query(&sql)
            .bind(key.consumer)
            .bind(partition(key))
            .bind(key.owner)
            .bind(token)
            .bind(bound.to_string())
            .fetch_optional(&mut **transaction)
            .await
            .map_err(store_error)?;
        Ok(held.is_some())
    }
}

/// The partition's index as stored.
fn partition(key: PartitionKey<'_>) -> i32 {
    i32::try_from(key.partition).unwrap_or(i32::MAX)
}
