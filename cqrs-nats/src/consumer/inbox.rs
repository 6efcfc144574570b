//! The inbox: the record, committed with a handler's writes, that a
//! message was processed, by which a redelivery is recognised.

use std::time::Duration;

use cqrskit_postgres::sqlx::{self, PgConnection};

use super::{Consumer, ConsumerError, Handler};

impl<H: Handler> Consumer<H> {
    /// Records the message `id` of `source` as processed by this consumer,
    /// in `transaction`; `false` when it was already (a row an earlier
    /// version wrote without the source counts too).
    pub(super) async fn record_in_inbox(
        &self,
        transaction: &mut PgConnection,
        source: &str,
        id: &str,
    ) -> Result<bool, sqlx::Error> {
        let table = self.table("nats_inbox");
        let recorded = sqlx::query(&format!(
            "INSERT INTO {table} (consumer, source, message_id)
             SELECT $1, $2, $3
             WHERE NOT EXISTS (
                 SELECT 1 FROM {table} WHERE consumer = $1 AND source = '' AND message_id = $3)
             ON CONFLICT DO NOTHING"
        ))
        .bind(&self.options.durable)
        .bind(source)
        .bind(id)
        .execute(transaction)
        .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// Deletes this consumer's inbox rows older than `age`, and returns how
    /// many. The inbox recognises a message delivered again only while its
    /// row is there: choose an age beyond the longest a message can still be
    /// delivered (the stream's retention, or at least `ack_wait` times
    /// `max_deliver` plus the backoff).
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn prune_inbox(&self, age: Duration) -> Result<u64, ConsumerError> {
        // Past a century is as good as forever, and fits an interval.
        let century = chrono::Duration::days(36_525);
        let age = chrono::Duration::from_std(age).map_or(century, |age| age.min(century));
        let pruned = sqlx::query(&format!(
            "DELETE FROM {} WHERE consumer = $1 AND processed_at < now() - $2::interval",
            self.table("nats_inbox")
        ))
        .bind(&self.options.durable)
        .bind(age)
        .execute(self.store.pool())
        .await
        .map_err(|error| self.database(error))?;
        Ok(pruned.rows_affected())
    }
}
