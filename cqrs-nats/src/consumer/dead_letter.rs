//! Dead letters: messages a consumer gave up on, kept in a table (and
//! published to a subject) to inspect and replay.

use async_nats::jetstream;
use cqrskit_core::BoxError;
use cqrskit_postgres::sqlx::{self, Connection};

use super::{Consumer, ConsumerError, Handler};
use crate::cloudevent::CloudEvent;

impl<H: Handler> Consumer<H> {
    /// Keeps `message` as a dead letter, and publishes it to the dead-letter
    /// subject when there is one.
    pub(super) async fn dead_letter(
        &self,
        message: &jetstream::Message,
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
        sqlx::query(&format!(
            "INSERT INTO {} (consumer, message_id, subject, headers, body, reason, deliveries)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            self.table("nats_dead_letters")
        ))
        .bind(&self.options.durable)
        .bind(message_id)
        .bind(message.subject.as_str())
        .bind(sqlx::types::Json(serde_json::Value::Object(headers)))
        .bind(message.payload.as_ref())
        .bind(reason)
        .bind(delivered)
        .execute(self.store.pool())
        .await
        .map_err(|error| self.database(error))?;
        tracing::warn!(consumer = %self.options.durable, message_id, reason, delivered, "dead-lettered a message");
        if let Some(subject) = &self.options.dead_letter_subject {
            let mut headers = dead_letter_headers(message, &self.options.durable, message_id);
            headers.insert("Cqrskit-Dead-Letter-Reason", reason);
            headers.insert(
                "Cqrskit-Dead-Letter-Consumer",
                self.options.durable.as_str(),
            );
            self.jetstream
                .publish_with_headers(subject.clone(), headers, message.payload.clone())
                .await
                .map_err(|error| self.nats(error))?
                .await
                .map_err(|error| self.nats(error))?;
        }
        Ok(())
    }

    /// The dead letters of this consumer: message id, subject, reason and
    /// deliveries, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ConsumerError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(&format!(
            "SELECT message_id, subject, reason, deliveries FROM {}
             WHERE consumer = $1 ORDER BY parked_at, message_id",
            self.table("nats_dead_letters")
        ))
        .bind(&self.options.durable)
        .fetch_all(self.store.pool())
        .await
        .map_err(|error| self.database(error))?;
        Ok(rows
            .into_iter()
            .map(|(message_id, subject, reason, deliveries)| DeadLetter {
                message_id,
                subject,
                reason,
                deliveries,
            })
            .collect())
    }
    /// Runs the handler again on the dead letter `message_id` (after the
    /// cause was fixed), exactly as on a delivery: its writes commit with
    /// the inbox row, and the dead letter is removed in the same
    /// transaction. `Ok(false)` when there is no such dead letter.
    ///
    /// # Errors
    ///
    /// When the database fails, or the handler fails again (the dead letter
    /// then stays, with nothing of the attempt written), or the stored
    /// message is no CloudEvent.
    pub async fn replay_dead_letter(&self, message_id: &str) -> Result<bool, ReplayError> {
        let database = |error| ReplayError::Consumer(self.database(error));
        let mut connection = self.store.pool().acquire().await.map_err(database)?;
        let mut transaction = connection.begin().await.map_err(database)?;
        let row: Option<(sqlx::types::Json<serde_json::Value>, Vec<u8>)> =
            sqlx::query_as(&format!(
                "DELETE FROM {} WHERE consumer = $1 AND message_id = $2 RETURNING headers, body",
                self.table("nats_dead_letters")
            ))
            .bind(&self.options.durable)
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
        self.record_in_inbox(&mut transaction, &event.id)
            .await
            .map_err(database)?;
        self.handler
            .handle(&event, &mut transaction)
            .await
            .map_err(ReplayError::Handler)?;
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
    /// The CloudEvent id (or, for a message that is none, its `Nats-Msg-Id`
    /// or stream sequence).
    pub message_id: String,
    /// Its subject.
    pub subject: String,
    /// The last error.
    pub reason: String,
    /// Deliveries before it was given up on.
    pub deliveries: i64,
}

/// The headers of `message`'s dead-letter copy: its own, without the
/// JetStream controls the publisher set (the expected stream and sequence
/// would refuse the copy, and its message id would have JetStream drop it
/// as a duplicate in a stream that holds the original), and a message id of
/// the copy's own, the same each time this consumer dead-letters it.
fn dead_letter_headers(
    message: &jetstream::Message,
    consumer: &str,
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
        format!("dead-letter/{consumer}/{message_id}").as_str(),
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
