//! The inbox: what makes a message from outside (a broker's delivery)
//! take effect once, and where the messages a consumer gave up on are kept.
//!
//! A broker delivers at least once. A consumer that writes its effect and
//! the record that the message was processed in one transaction of the
//! store's ([`Inbox`]) recognises a redelivery by the message's identity
//! and does not apply it again. A message that keeps failing is parked
//! ([`DeadLetters`]) to be inspected and replayed. Both traits are the
//! broker's side of the store: the NATS consumer works through them, and a
//! store implements them (the PostgreSQL store with `PostgresInbox`).

mod partitions;

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

pub use self::partitions::{PartitionKey, PartitionLeases};

/// A message's identity at one consumer: the consumer, and the message's
/// `source` and `id` (a CloudEvent's identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageKey<'a> {
    /// The consumer (a durable consumer's name).
    pub consumer: &'a str,
    /// The message's source (empty for a message that names none).
    pub source: &'a str,
    /// The message's id, unique within its source.
    pub id: &'a str,
}

/// A transactional inbox: the record, committed with a handler's writes,
/// that a consumer processed a message.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// What a handler writes through (for PostgreSQL, a `PgConnection`).
    type Connection: ?Sized + Send;
    /// An open transaction of the store's.
    type Transaction: Send;

    /// The connection `transaction` writes through.
    fn connection(transaction: &mut Self::Transaction) -> &mut Self::Connection;

    /// Opens a transaction.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn begin(&self) -> Result<Self::Transaction, StoreError>;

    /// Commits `transaction`: the handler's writes and the inbox record
    /// together.
    ///
    /// # Errors
    ///
    /// Back-end failures ([`StoreError::OutcomeUnknown`] when the answer to
    /// the commit was lost).
    async fn commit(&self, transaction: Self::Transaction) -> Result<(), StoreError>;

    /// Records in `transaction` that `key` was processed; `false` when it
    /// was already (a redelivery).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn record(
        &self,
        transaction: &mut Self::Transaction,
        key: MessageKey<'_>,
    ) -> Result<bool, StoreError>;

    /// Forgets `consumer`'s records older than `age`, and returns how many.
    /// A redelivery is recognised only while its record is kept.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn prune(&self, consumer: &str, age: Duration) -> Result<u64, StoreError>;
}

/// A message a consumer gave up on, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The message's source (empty for a message that names none).
    pub source: String,
    /// The message's id: with `source`, its identity.
    pub message_id: String,
    /// The subject (topic) it came on.
    pub subject: String,
    /// Its headers, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// Its body, as received.
    pub body: Vec<u8>,
    /// The last error.
    pub reason: String,
    /// Attempts before it was given up on.
    pub deliveries: u64,
    /// Why it could not be published to the dead-letter subject, when it
    /// could not (it is kept all the same).
    pub publish_error: Option<String>,
}

/// Where a consumer keeps the messages it gave up on, to inspect and replay.
#[async_trait]
pub trait DeadLetters: Inbox {
    /// Keeps `message` as a dead letter of `consumer`; a message kept
    /// already stays as it was (one replayed and given up on again is open
    /// again).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn park(&self, consumer: &str, message: &ParkedMessage) -> Result<(), StoreError>;

    /// Records on the dead letter `key` why it could not be published.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn publish_failed(&self, key: MessageKey<'_>, error: &str) -> Result<(), StoreError>;

    /// Why `key` was given up on, if it was and nobody replayed it since
    /// (a skipped dead letter stays given up on).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn parked_reason(&self, key: MessageKey<'_>) -> Result<Option<String>, StoreError>;

    /// The open dead letters of `consumer`, oldest first.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn parked(&self, consumer: &str) -> Result<Vec<ParkedMessage>, StoreError>;

    /// Closes the open dead letter `key` as replayed in `transaction` (once
    /// that commits; it stays open if it rolls back), returning it. A store
    /// keeps it, closed, as history.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn unpark(
        &self,
        transaction: &mut Self::Transaction,
        key: MessageKey<'_>,
    ) -> Result<Option<ParkedMessage>, StoreError>;

    /// The open dead letters of `consumer` an operator asked to replay, as
    /// (source, id), oldest request first. A store without operators' requests
    /// has none.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn replays_requested(&self, consumer: &str) -> Result<Vec<(String, String)>, StoreError> {
        let _ = consumer;
        Ok(Vec::new())
    }

    /// Records that replaying the dead letter `key` failed with `error`: the
    /// request is cleared, and the dead letter stays open with the error.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn replay_failed(&self, key: MessageKey<'_>, error: &str) -> Result<(), StoreError> {
        let _ = (key, error);
        Ok(())
    }
}
