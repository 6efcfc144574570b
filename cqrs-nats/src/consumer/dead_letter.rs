//! Dead letters: messages a consumer gave up on, kept in a table (and
//! published to a subject) to inspect and replay.

use async_nats::jetstream;
use cqrskit_core::inbox::{DeadLetters, ParkedMessage};

use super::{Consumer, Handler};
use crate::Error;
use crate::cloudevent::CloudEvent;

/// The header naming the consumer that dead-lettered a message, on its
/// dead-letter copy.
pub(super) const CONSUMER_HEADER: &str = "Cqrskit-Dead-Letter-Consumer";
/// The header carrying the reason, on a dead-letter copy.
const REASON_HEADER: &str = "Cqrskit-Dead-Letter-Reason";

impl<I, H> Consumer<I, H>
where
    I: DeadLetters,
    H: Handler<I::Connection>,
{
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
    ) -> Result<(), Error> {
        let headers = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |value| (name.to_string(), value.as_str().to_owned()))
            })
            .collect();
        let parked = ParkedMessage {
            source: source.to_owned(),
            message_id: message_id.to_owned(),
            subject: message.subject.to_string(),
            headers,
            body: message.payload.to_vec(),
            reason: reason.to_owned(),
            deliveries: u64::try_from(delivered).unwrap_or_default(),
            publish_error: None,
        };
        self.inbox
            .park(&self.options.durable, &parked)
            .await
            .map_err(|error| self.store(error))?;
        tracing::error!(consumer = %self.options.durable, source, message_id, subject = %message.subject, reason, delivered, "dead-lettered a message");
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
            tracing::warn!(consumer = %self.options.durable, source, message_id, %error, "a dead letter stays in the table only");
            self.inbox
                .publish_failed(self.key(source, message_id), &error)
                .await
                .map_err(|error| self.store(error))?;
        }
        Ok(())
    }

    /// The open dead letters of this consumer, oldest first.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn dead_letters(&self) -> Result<Vec<ParkedMessage>, Error> {
        self.inbox
            .parked(&self.options.durable)
            .await
            .map_err(|error| self.store(error))
    }

    /// Runs the handler again on the dead letter `message_id` of `source`
    /// (after the cause was fixed), as on a delivery: its writes commit with
    /// the inbox row, and the dead letter is closed as replayed in the same
    /// transaction (kept, as history); a panic is a failure. A replay is
    /// not counted in the consumer's metrics nor told to its hook, which
    /// follow deliveries. `Ok(false)` when there
    /// is no such open dead letter. A running consumer also replays those
    /// an operator asks for (`cqrs-admin consumer-dead-letters`).
    ///
    /// # Errors
    ///
    /// When the store fails, or the handler fails again (the dead letter
    /// then stays, with nothing of the attempt written), or the stored
    /// message is no CloudEvent.
    pub async fn replay_dead_letter(&self, source: &str, message_id: &str) -> Result<bool, Error> {
        let store = |error| self.store(error);
        let mut transaction = self.inbox.begin().await.map_err(store)?;
        let parked = self
            .inbox
            .unpark(&mut transaction, self.key(source, message_id))
            .await
            .map_err(store)?;
        let Some(parked) = parked else {
            return Ok(false);
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &parked.headers {
            headers.append(name.as_str(), value.as_str());
        }
        let body = parked.body;
        let event =
            CloudEvent::decode(Some(&headers), &body).map_err(|source| Error::NotACloudEvent {
                consumer: self.options.durable.clone(),
                source,
            })?;
        // Processed already (delivered again and handled after it was
        // dead-lettered): the dead letter is closed without a second run.
        let first_time = self
            .inbox
            .record(&mut transaction, self.key(&event.source, &event.id))
            .await
            .map_err(store)?;
        if first_time {
            // A panicking handler is a failed replay, not a dead consumer.
            cqrskit_core::unwind::caught(
                self.handler.handle(&event, I::connection(&mut transaction)),
            )
            .await
            .unwrap_or_else(|panic| Err(format!("the handler panicked: {panic}").into()))
            .map_err(|source| Error::Handler {
                consumer: self.options.durable.clone(),
                source,
            })?;
        }
        self.inbox.commit(transaction).await.map_err(store)?;
        Ok(true)
    }
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
