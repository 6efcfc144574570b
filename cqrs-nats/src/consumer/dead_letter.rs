//! Dead letters: messages a consumer gave up on, kept in a table (and
//! published to a subject) to inspect and replay.

use async_nats::jetstream;
use cqrskit_core::BoxError;
use cqrskit_postgres::sqlx::{self, Connection};

use super::{Consumer, ConsumerError, Handler};
use crate::cloudevent::CloudEvent;

/// The header naming the consumer that dead-lettered a message, on its
/// dead-letter copy.
pub(super) const CONSUMER_HEADER: &str = "Cqrskit-Dead-Letter-Consumer";
/// The header carrying the reason, on a dead-letter copy.
const REASON_HEADER: &str = "Cqrskit-Dead-Letter-Reason";

impl<H: Handler> Consumer<H> {
    /// Keeps `message` (the message `message_id` of `source`) as a dead
    /// letter, then publishes it to the dead-letter subject when there is
    /// one. A publication that fails is recorded on the dead letter and
    /// logged; it does not fail the message, which is kept in the table.
    pub(super) async fn dead_letter(
        &self,
        message: &jetstream::Message,
        source: &str,
        message_id: &str,
        reason: &str,
        delivered: i64,
    ) -> Result<(), ConsumerError> {
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .map(|(name, values)| {
                let values: Vec<serde_json::Value> =
                    values.iter().map(|value| value.as_str().into()).collect();
                (name.to_string(), serde_json::Value::Array(values))
            })
            .collect();
        let table = self.table("nats_dead_letters");
        sqlx::query(&format!(
            "INSERT INTO {table} (consumer, source, message_id, subject, headers, body, reason, deliveries)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        ))
        .bind(&self.options.durable)
        .bind(source)
        .bind(message_id)
        .bind(message.subject.as_str())
        .bind(sqlx::types::Json(serde_json::Value::Object(headers)))
        .bind(message.payload.as_ref())
        .bind(reason)
        .bind(delivered)
        .execute(self.store.pool())
        .await
        .map_err(|error| self.database(error))?;
        tracing::warn!(consumer = %self.options.durable, source, message_id, reason, delivered, "dead-lettered a message");
        let Some(subject) = &self.options.dead_letter_subject else {
            return Ok(());
        };
        let mut headers = dead_letter_headers(message, &self.options.durable, source, message_id);
        headers.insert(REASON_HEADER, reason);
        headers.insert(CONSUMER_HEADER, self.options.durable.as_str());
        let published = match self
            .jetstream
            .publish_with_headers(subject.clone(), headers, message.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(drop).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = published {
            let error = format!("not published to `{subject}`: {error}");
            tracing::error!(consumer = %self.options.durable, source, message_id, %error, "a dead letter stays in the table only");
            sqlx::query(&format!(
                "UPDATE {table} SET publish_error = $4
                 WHERE consumer = $1 AND source = $2 AND message_id = $3"
            ))
            .bind(&self.options.durable)
            .bind(source)
            .bind(message_id)
            .bind(&error)
            .execute(self.store.pool())
            .await
            .map_err(|error| self.database(error))?;
        }
        Ok(())
    }

    /// Why the message `message_id` of `source` was dead-lettered, if it
    /// was.
    pub(super) async fn dead_letter_reason(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<String>, ConsumerError> {
        sqlx::query_scalar(&format!(
            "SELECT reason FROM {} WHERE consumer = $1 AND source = $2 AND message_id = $3",
            self.table("nats_dead_letters")
        ))
        .bind(&self.options.durable)
        .bind(source)
        .bind(message_id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(|error| self.database(error))
    }

    /// The dead letters of this consumer, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ConsumerError> {
        let rows: Vec<(String, String, String, String, i64, Option<String>)> =
            sqlx::query_as(&format!(
                "SELECT source, message_id, subject, reason, deliveries, publish_error FROM {}
                 WHERE consumer = $1 ORDER BY parked_at, source, message_id",
                self.table("nats_dead_letters")
            ))
            .bind(&self.options.durable)
            .fetch_all(self.store.pool())
            .await
            .map_err(|error| self.database(error))?;
        Ok(rows
            .into_iter()
            .map(
                |(source, message_id, subject, reason, deliveries, publish_error)| DeadLetter {
                    source,
                    message_id,
                    subject,
                    reason,
                    deliveries,
                    publish_error,
                },
            )
            .collect())
    }

    /// Runs the handler again on the dead letter `message_id` of `source`
    /// (after the cause was fixed), exactly as on a delivery: its writes
    /// commit with the inbox row, and the dead letter is removed in the
    /// same transaction. `Ok(false)` when there is no such dead letter.
    ///
    /// # Errors
    ///
    /// When the database fails, or the handler fails again (the dead letter
    /// then stays, with nothing of the attempt written), or the stored
    /// message is no CloudEvent.
    pub async fn replay_dead_letter(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<bool, ReplayError> {
        let database = |error| ReplayError::Consumer(self.database(error));
        let mut connection = self.store.pool().acquire().await.map_err(database)?;
        let mut transaction = connection.begin().await.map_err(database)?;
        let row: Option<(sqlx::types::Json<serde_json::Value>, Vec<u8>)> =
            sqlx::query_as(&format!(
                "DELETE FROM {} WHERE consumer = $1 AND source = $2 AND message_id = $3
                 RETURNING headers, body",
                self.table("nats_dead_letters")
            ))
            .bind(&self.options.durable)
            .bind(source)
            .bind(message_id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(database)?;
        let Some((sqlx::types::Json(stored), body)) = row else {
            return Ok(false);
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, values) in stored.as_object().into_iter().flatten() {
            for value in values.as_array().into_iter().flatten() {
                headers.append(name.as_str(), value.as_str().unwrap_or_default());
            }
        }
        let event =
            CloudEvent::decode(Some(&headers), &body).map_err(ReplayError::NotACloudEvent)?;
        // Processed already (delivered again and handled after it was
        // dead-lettered): the dead letter is closed without a second run.
        let first_time = self
            .record_in_inbox(&mut transaction, &event.source, &event.id)
            .await
            .map_err(database)?;
        if first_time {
            self.handler
                .handle(&event, &mut transaction)
                .await
                .map_err(ReplayError::Handler)?;
        }
        transaction.commit().await.map_err(database)?;
        Ok(true)
    }
}

/// Why a dead letter could not be replayed; it stays where it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The database failed.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The handler failed again.
    #[error("the handler failed again: {0}")]
    Handler(#[source] BoxError),
    /// The stored message is no CloudEvent; only a fix of the message
    /// itself could help.
    #[error("the dead letter is no CloudEvent: {0}")]
    NotACloudEvent(#[source] crate::CloudEventError),
}

/// A message a consumer gave up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The CloudEvent `source` (empty for a message that is no CloudEvent).
    pub source: String,
    /// The CloudEvent id (or, for a message that is none, its `Nats-Msg-Id`
    /// or stream sequence): with `source`, the message's identity.
    pub message_id: String,
    /// Its subject.
    pub subject: String,
    /// The last error.
    pub reason: String,
    /// Attempts before it was given up on.
    pub deliveries: i64,
    /// Why it could not be published to the dead-letter subject, when it
    /// could not (it is kept in the table all the same).
    pub publish_error: Option<String>,
}

/// The headers of `message`'s dead-letter copy: its own, without the
/// JetStream controls the publisher set (the expected stream and sequence
/// would refuse the copy, and its message id would have JetStream drop it
/// as a duplicate in a stream that holds the original), and a message id of
/// the copy's own, the same each time this consumer dead-letters it.
fn dead_letter_headers(
    message: &jetstream::Message,
    consumer: &str,
    source: &str,
    message_id: &str,
) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in message.headers.iter().flat_map(|headers| headers.iter()) {
        let name = name.to_string();
        if name.to_ascii_lowercase().starts_with("nats-") {
            continue;
        }
        for value in values {
            headers.append(name.as_str(), value.as_str());
        }
    }
    headers.insert(
        "Nats-Msg-Id",
        format!("dead-letter/{consumer}/{source}/{message_id}").as_str(),
    );
    headers
}

/// The id of a message that is not a CloudEvent: its `Nats-Msg-Id`, or its
/// stream sequence.
pub(super) fn fallback_id(message: &jetstream::Message) -> String {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Msg-Id"))
        .map(|id| id.as_str().to_owned())
        .or_else(|| {
            message
                .info()
                .ok()
                .map(|info| format!("stream-sequence-{}", info.stream_sequence))
        })
        .unwrap_or_default()
}
