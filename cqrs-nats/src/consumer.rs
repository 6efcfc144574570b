//! Consuming integration events once in effect: a durable JetStream pull
//! consumer feeding a handler whose PostgreSQL writes commit together with
//! the record that the message was processed (an inbox row), before the
//! message is acknowledged.
//!
//! JetStream delivers at least once: a consumer that dies after its commit
//! and before its acknowledgement gets the message again. The inbox row,
//! committed with the handler's writes, recognises it: the redelivered
//! message is acknowledged without running the handler. A handler that
//! fails is retried through JetStream's redelivery, after a growing delay;
//! after `max_deliver` deliveries the message is dead-lettered: kept in a
//! table (with its headers, body and the last error) and published to a
//! dead-letter subject, then terminated so JetStream stops redelivering it.
//! A message that is not a CloudEvent is dead-lettered at once.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use async_trait::async_trait;
use cqrskit_core::{BoxError, Metadata};
use cqrskit_postgres::PostgresEventStore;
use cqrskit_postgres::sqlx::{self, Connection, PgConnection};

use crate::cloudevent::CloudEvent;

/// What a consumer does with each integration event.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles `event` inside `transaction`, which commits together with
    /// the record that the message was processed. An error rolls both back
    /// and the message is delivered again later.
    ///
    /// # Errors
    ///
    /// Any error of the handler's own.
    async fn handle(
        &self,
        event: &CloudEvent,
        transaction: &mut PgConnection,
    ) -> Result<(), BoxError>;
}

/// Where a consumer reads and how it retries.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// The JetStream stream to read.
    pub stream: String,
    /// The durable consumer's name: JetStream keeps its progress under it,
    /// and the inbox and dead letters are keyed by it.
    pub durable: String,
    /// Only messages on these subjects (wildcards allowed); all when empty.
    pub filter_subject: String,
    /// Deliveries of a message before it is dead-lettered (at least 1).
    pub max_deliver: i64,
    /// The delay before each redelivery after a failure: the first entry
    /// after the first failure, and so on; the last repeats.
    pub backoff: Vec<Duration>,
    /// How long JetStream waits for an acknowledgement before it delivers
    /// a message again (a consumer that died holding it).
    pub ack_wait: Duration,
    /// Where dead letters are published (besides the table), if anywhere.
    pub dead_letter_subject: Option<String>,
    /// Messages fetched per request.
    pub batch: usize,
}

impl ConsumerOptions {
    /// Options reading `stream` as the durable consumer `durable`: every
    /// subject, five deliveries with delays 0.1 s, 1 s, 5 s and 10 s, a 30 s
    /// acknowledgement wait, no dead-letter subject, 100 messages a fetch.
    pub fn new(stream: impl Into<String>, durable: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: String::new(),
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(10),
            ],
            ack_wait: Duration::from_secs(30),
            dead_letter_subject: None,
            batch: 100,
        }
    }
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its writes committed.
    Handled,
    /// Processed before (a redelivery): acknowledged, the handler not run.
    AlreadyProcessed,
    /// The handler failed; JetStream delivers it again after the delay.
    Retrying {
        /// Deliveries so far.
        delivered: i64,
        /// The handler's error.
        reason: String,
    },
    /// Given up on: stored as a dead letter, and JetStream told to stop.
    DeadLettered {
        /// Why.
        reason: String,
    },
}

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// PostgreSQL failed (the inbox, the dead letters, a commit).
    #[error("consumer `{consumer}`: the database failed: {source}")]
    Database {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: sqlx::Error,
    },
    /// NATS failed (fetching, acknowledging, creating the consumer).
    #[error("consumer `{consumer}`: NATS failed: {source}")]
    Nats {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
}

/// A message whose handler's writes and inbox row have committed, awaiting
/// its acknowledgement (see [`Consumer::commit`]).
pub struct Committed {
    message: jetstream::Message,
    outcome: Outcome,
}

impl Committed {
    /// What the commit did.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }
}

/// A durable consumer applying each message once in effect (see the module
/// docs). Its tables, `nats_inbox` and `nats_dead_letters`, live in the
/// store's schema and are created by [`setup`](Self::setup).
pub struct Consumer<H> {
    store: PostgresEventStore,
    jetstream: jetstream::Context,
    handler: H,
    options: ConsumerOptions,
}

impl<H: Handler> Consumer<H> {
    /// A consumer writing through `store`'s pool and schema.
    pub fn new(
        store: PostgresEventStore,
        jetstream: jetstream::Context,
        handler: H,
        options: ConsumerOptions,
    ) -> Self {
        Self {
            store,
            jetstream,
            handler,
            options,
        }
    }

    fn database(&self, source: sqlx::Error) -> ConsumerError {
        ConsumerError::Database {
            consumer: self.options.durable.clone(),
            source,
        }
    }

    fn nats(&self, source: impl Into<BoxError>) -> ConsumerError {
        ConsumerError::Nats {
            consumer: self.options.durable.clone(),
            source: source.into(),
        }
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.store.schema().quoted())
    }

    /// Creates the inbox and dead-letter tables if missing, and the durable
    /// JetStream consumer if missing. Idempotent; [`run`](Self::run) calls
    /// it first.
    ///
    /// # Errors
    ///
    /// When the database or NATS refuses.
    pub async fn setup(
        &self,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, ConsumerError> {
        let (inbox, dead) = (self.table("nats_inbox"), self.table("nats_dead_letters"));
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {inbox} (
                 consumer text NOT NULL,
                 message_id text NOT NULL,
                 processed_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (consumer, message_id));
             CREATE TABLE IF NOT EXISTS {dead} (
                 consumer text NOT NULL,
                 message_id text NOT NULL,
                 subject text NOT NULL,
                 headers jsonb NOT NULL,
                 body bytea NOT NULL,
                 reason text NOT NULL,
                 deliveries bigint NOT NULL,
                 parked_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (consumer, message_id))"
        ))
        .execute(self.store.pool())
        .await
        .map_err(|error| self.database(error))?;
        let stream = self
            .jetstream
            .get_stream(&self.options.stream)
            .await
            .map_err(|error| self.nats(error))?;
        stream
            .get_or_create_consumer(
                &self.options.durable,
                pull::Config {
                    durable_name: Some(self.options.durable.clone()),
                    filter_subject: self.options.filter_subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    max_deliver: self.options.max_deliver.max(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| self.nats(error))
    }

    /// Fetches and processes messages until `shutdown` completes.
    ///
    /// # Errors
    ///
    /// When the database or NATS fails; the message at hand is delivered
    /// again later.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ConsumerError> {
        let consumer = self.setup().await?;
        // The client's continuous pull: it keeps a request open, renews it
        // before it expires and watches the server's heartbeats. (Single
        // pull requests in a loop stalled a message for five seconds about
        // once in 400 when a request expired while the message was on its
        // way: the client waits five seconds past a request's expiry for a
        // timeout notice that may not come.)
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.options.batch.max(1))
            .messages()
            .await
            .map_err(|error| self.nats(error))?;
        tokio::pin!(shutdown);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => return Ok(()),
                message = next(&mut messages) => message,
            };
            let Some(message) = message else {
                return Ok(());
            };
            let message = message.map_err(|error| self.nats(error))?;
            self.process(message).await?;
        }
    }

    /// The next message for this consumer, waiting at most `wait`; `None`
    /// when none came. For loops of your own around
    /// [`commit`](Self::commit) and [`acknowledge`](Self::acknowledge).
    ///
    /// # Errors
    ///
    /// When NATS fails, or the consumer cannot be set up.
    pub async fn fetch_one(
        &self,
        wait: Duration,
    ) -> Result<Option<jetstream::Message>, ConsumerError> {
        let consumer = self.setup().await?;
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|error| self.nats(error))?;
        // Bounded here too: past the request's expiry no message can come
        // for it, and the client would otherwise wait five seconds more for
        // the server's timeout notice.
        let deadline = wait.saturating_add(Duration::from_millis(250));
        match tokio::time::timeout(deadline, next(&mut batch)).await {
            Ok(message) => message.transpose().map_err(|error| self.nats(error)),
            Err(_) => Ok(None),
        }
    }

    /// Processes one message: [`commit`](Self::commit), then
    /// [`acknowledge`](Self::acknowledge).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn process(&self, message: jetstream::Message) -> Result<Outcome, ConsumerError> {
        let committed = self.commit(message).await?;
        self.acknowledge(committed).await
    }

    /// The first half of [`process`](Self::process): decodes the message,
    /// and either commits the handler's writes with the inbox row, or
    /// finds the message processed before, or (on failure) decides between
    /// a retry and a dead letter. Nothing is acknowledged yet.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn commit(&self, message: jetstream::Message) -> Result<Committed, ConsumerError> {
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        let event = match CloudEvent::decode(message.headers.as_ref(), &message.payload) {
            Ok(event) => event,
            Err(error) => {
                let reason = format!("not a CloudEvent: {error}");
                self.dead_letter(&message, &fallback_id(&message), &reason, delivered)
                    .await?;
                return Ok(Committed {
                    message,
                    outcome: Outcome::DeadLettered { reason },
                });
            }
        };
        let mut connection = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(|error| self.database(error))?;
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| self.database(error))?;
        let first_time = self
            .record_in_inbox(&mut transaction, &event.id)
            .await
            .map_err(|error| self.database(error))?;
        if !first_time {
            return Ok(Committed {
                message,
                outcome: Outcome::AlreadyProcessed,
            });
        }
        match self.handler.handle(&event, &mut transaction).await {
            Ok(()) => {
                transaction
                    .commit()
                    .await
                    .map_err(|error| self.database(error))?;
                Ok(Committed {
                    message,
                    outcome: Outcome::Handled,
                })
            }
            Err(error) => {
                drop(transaction);
                let reason = error.to_string();
                if delivered >= self.options.max_deliver.max(1) {
                    self.dead_letter(&message, &event.id, &reason, delivered)
                        .await?;
                    return Ok(Committed {
                        message,
                        outcome: Outcome::DeadLettered { reason },
                    });
                }
                Ok(Committed {
                    message,
                    outcome: Outcome::Retrying { delivered, reason },
                })
            }
        }
    }

    /// The second half of [`process`](Self::process): acknowledges a
    /// processed message, asks for a delayed redelivery of a failed one, or
    /// tells JetStream to stop delivering a dead letter.
    ///
    /// # Errors
    ///
    /// When NATS fails; a message not acknowledged is delivered again, and
    /// the inbox recognises it.
    pub async fn acknowledge(&self, committed: Committed) -> Result<Outcome, ConsumerError> {
        let Committed { message, outcome } = committed;
        let kind = match &outcome {
            Outcome::Handled | Outcome::AlreadyProcessed => AckKind::Ack,
            Outcome::Retrying { delivered, .. } => {
                let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
                let delay = self
                    .options
                    .backoff
                    .get(index)
                    .or(self.options.backoff.last())
                    .copied();
                AckKind::Nak(delay)
            }
            Outcome::DeadLettered { .. } => AckKind::Term,
        };
        message
            .ack_with(kind)
            .await
            .map_err(|error| self.nats(error))?;
        Ok(outcome)
    }

    /// Records `message_id` as processed by this consumer, in `transaction`;
    /// `false` when it was already.
    async fn record_in_inbox(
        &self,
        transaction: &mut PgConnection,
        message_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let recorded = sqlx::query(&format!(
            "INSERT INTO {} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.table("nats_inbox")
        ))
        .bind(&self.options.durable)
        .bind(message_id)
        .execute(transaction)
        .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// Keeps `message` as a dead letter, and publishes it to the dead-letter
    /// subject when there is one.
    async fn dead_letter(
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
            let mut headers = message.headers.clone().unwrap_or_default();
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
}

impl<H: Handler> Consumer<H> {
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

/// The id of a message that is not a CloudEvent: its `Nats-Msg-Id`, or its
/// stream sequence.
fn fallback_id(message: &jetstream::Message) -> String {
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

/// Metadata for commands a handler executes because of `event`: its
/// correlation id carried over, the event's id as causation id (when they
/// are UUIDs, as the relay writes them).
pub fn caused_by(event: &CloudEvent) -> Metadata {
    let uuid = |text: Option<String>| text.and_then(|text| uuid::Uuid::parse_str(&text).ok());
    let mut metadata = Metadata::new();
    metadata.correlation_id = uuid(event.extension("correlationid"));
    metadata.causation_id = uuid(Some(event.id.clone()));
    metadata
}

/// The next item of `stream`.
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|context| std::pin::Pin::new(&mut *stream).poll_next(context)).await
}
