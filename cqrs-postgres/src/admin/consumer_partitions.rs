//! An operator's view of a split consumer's partitions (a NATS
//! `PartitionedConsumer`): who reads each, and clearing the recorded split
//! so that the consumer can be split another way.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Admin;
use crate::Error;

/// One partition of a split consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerPartitionInfo {
    /// The partition's index, from 0.
    pub partition: u32,
    /// The consumer's partition count.
    pub partitions: u32,
    /// The instance reading it, while its lease runs.
    pub owner: Option<String>,
    /// When its lease ends unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it changed hands (its fencing token).
    pub takeovers: i64,
}

impl Admin {
    /// The partitions of the split consumer `consumer`, in order; empty when
    /// it is not split (or never ran).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn consumer_partitions(
        &self,
        consumer: &str,
    ) -> Result<Vec<ConsumerPartitionInfo>, Error> {
        let database = self.store.database();
        let table = self.store.table("consumer_partitions");
        let mut session = database.session().await?;
        // language=SQL
        let rows = database
            .query(&format!(
                "SELECT partition, partitions, fencing_token,
                        CASE WHEN lease_expires_at > now() THEN owner END AS owner,
                        CASE WHEN lease_expires_at > now() THEN lease_expires_at END AS expires
                 FROM {table} WHERE consumer = $1 ORDER BY partition"
            ))
            .bind(consumer)
            .fetch_all(&mut *session)
            .await?;
        session.finish().await?;
        let unsigned = |value: i32| u32::try_from(value).unwrap_or_default();
        Ok(rows
            .iter()
            .map(|row| {
                Ok(ConsumerPartitionInfo {
                    partition: unsigned(row.try_get("partition")?),
                    partitions: unsigned(row.try_get("partitions")?),
                    owner: row.try_get("owner")?,
                    lease_expires_at: row.try_get("expires")?,
                    takeovers: row.try_get("fencing_token")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Forgets how `consumer` is split, so that its next instance records
    /// another partition count; how many partitions were forgotten.
    /// Refused while any instance reads a partition: stop them all first.
    /// (Each partition then starts its JetStream consumer from the
    /// beginning of its slices; what was processed is recognised by the
    /// inbox.)
    ///
    /// # Errors
    ///
    /// [`Error::ConsumerRunning`] while a lease runs; the database's.
    pub async fn reset_consumer_partitions(&self, consumer: &str) -> Result<u64, Error> {
        let database = self.store.database();
        let table = self.store.table("consumer_partitions");
        let mut session = database.session().await?;
        // language=SQL
        let deleted = database
            .query(&format!(
                "DELETE FROM {table} WHERE consumer = $1
                   AND NOT EXISTS (SELECT 1 FROM {table}
                                   WHERE consumer = $1 AND lease_expires_at > now())"
            ))
            .bind(consumer)
            .execute(&mut *session)
            .await?
            .rows_affected();
        session.finish().await?;
        if deleted == 0 && !self.consumer_partitions(consumer).await?.is_empty() {
            return Err(Error::ConsumerRunning(consumer.to_owned()));
        }
        Ok(deleted)
    }
}
