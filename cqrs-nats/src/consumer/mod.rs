//! Consuming integration events once in effect: a durable JetStream pull
//! consumer feeding a handler whose writes commit together with the record
//! that the message was processed (the store's
//! [`Inbox`](cqrskit_core::inbox::Inbox); for PostgreSQL,
//! `cqrskit::postgres::PostgresInbox`), before the message is acknowledged.
//!
//! JetStream delivers at least once: a consumer that dies after its commit
//! and before its acknowledgement gets the message again. The inbox row,
//! committed with the handler's writes, recognises it by the CloudEvent's
//! identity, `source` and `id`: the redelivered message is acknowledged
//! without running the handler. A handler that fails is retried after a
//! growing delay; after `max_attempts` attempts the message is
//! dead-lettered: kept in a table (with its headers, body and the last
//! error) and published to a dead-letter subject, then terminated so
//! JetStream stops delivering it. A message that is not a CloudEvent is
//! dead-lettered at once.
//!
//! Order: [`Consumer::run`] retries a failed message in place and holds
//! back the later messages of its stream (its `source` and `subject`) until
//! it is handled or dead-lettered, while the other streams' messages go on
//! (see `held`).

mod dead_letter;
mod held;
mod hosted;
mod inbox;
mod lag;
mod lane;
mod observe;
mod options;
mod partitioned;
mod run;
mod succession;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use async_trait::async_trait;
use cqrskit_core::inbox::{DeadLetters, Inbox, MessageKey};
use cqrskit_core::{BoxError, StoreError, unwind};

pub use self::lag::{ConsumerLag, consumer_lag};
use self::lane::Lane;
pub use self::observe::{Observed, OutcomeHook};
pub use self::options::ConsumerOptions;
pub use self::partitioned::PartitionedConsumer;
use crate::Error;
use crate::cloudevent::CloudEvent;

/// What a consumer does with each integration event, writing through the
/// inbox's connection `C` (for PostgreSQL, `PgConnection`).
#[async_trait]
pub trait Handler<C: ?Sized + Send>: Send + Sync + 'static {
    /// Handles `event` inside the inbox's transaction (`transaction` writes
    /// in it), which commits together with the record that the message was
    /// processed. An error rolls both back and the message is delivered
    /// again later.
    ///
    /// # Errors
    ///
    /// Any error of the handler's own.
    async fn handle(&self, event: &CloudEvent, transaction: &mut C) -> Result<(), BoxError>;
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its writes committed.
    Handled,
    /// Processed before (a redelivery, or a copy of one of this consumer's
    /// own dead letters): acknowledged, the handler not run.
    AlreadyProcessed,
    /// The handler failed; it is tried again after the delay (under
    /// [`Consumer::run`] in place, the later messages of its stream held
    /// back; through [`Consumer::acknowledge`] by JetStream's redelivery).
    Retrying {
        /// Attempts so far.
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

/// A message whose handler's writes and inbox row have committed, awaiting
/// its acknowledgement (see [`Consumer::commit`]).
pub struct Unacknowledged {
    message: jetstream::Message,
    outcome: Outcome,
}

impl Unacknowledged {
    /// What the commit did.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }
}

/// A durable consumer applying each message once in effect (see the module
/// docs), through an inbox `I` (on PostgreSQL, `PostgresInbox`, whose tables
/// the store's migrations make).
pub struct Consumer<I: Inbox, H> {
    inbox: Arc<I>,
    jetstream: jetstream::Context,
    handler: Arc<H>,
    options: ConsumerOptions,
    hook: Option<OutcomeHook>,
    lane: Lane<I>,
}

impl<I, H> Consumer<I, H>
where
    I: DeadLetters,
    H: Handler<I::Connection>,
{
    /// A consumer recording what it processed, and what it gave up on, in
    /// `inbox`.
    pub fn new(
        inbox: I,
        jetstream: jetstream::Context,
        handler: H,
        options: ConsumerOptions,
    ) -> Self {
        Self {
            lane: Lane::whole(&options.durable),
            inbox: Arc::new(inbox),
            jetstream,
            handler: Arc::new(handler),
            options,
            hook: None,
        }
    }

    /// The same consumer reading `lane`: one partition of it, sharing the
    /// inbox, handler and hook.
    fn on_lane(&self, lane: Lane<I>) -> Self {
        Self {
            inbox: self.inbox.clone(),
            jetstream: self.jetstream.clone(),
            handler: self.handler.clone(),
            options: self.options.clone(),
            hook: self.hook.clone(),
            lane,
        }
    }

    /// Calls `hook` with each message's outcome (its subject, its identity,
    /// which delivery it was), once its writes committed or its failure was
    /// decided: to count by event type, alert on dead letters, trace. The
    /// hook runs on the consumer's task: keep it short.
    #[must_use]
    pub fn with_outcome_hook(
        mut self,
        hook: impl Fn(&Observed<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(std::sync::Arc::new(hook));
        self
    }

    fn store(&self, source: StoreError) -> Error {
        Error::Store {
            consumer: self.options.durable.clone(),
            source,
        }
    }

    /// The identity of the message `id` of `source` at this consumer.
    fn key<'a>(&'a self, source: &'a str, id: &'a str) -> MessageKey<'a> {
        MessageKey {
            consumer: &self.options.durable,
            source,
            id,
        }
    }

    fn nats(&self, source: impl Into<BoxError>) -> Error {
        Error::Nats {
            consumer: self.options.durable.clone(),
            source: source.into(),
        }
    }

    /// The JetStream stream it reads.
    async fn stream(&self) -> Result<jetstream::stream::Stream, Error> {
        self.jetstream
            .get_stream(&self.options.stream)
            .await
            .map_err(|error| self.nats(error))
    }

    /// Creates the durable JetStream consumer if missing. Idempotent, and
    /// safe when instances start together; [`run`](Self::run) calls it
    /// first. (The inbox's tables come with the store's migrations.)
    ///
    /// # Errors
    ///
    /// When NATS refuses.
    pub async fn setup(&self) -> Result<jetstream::consumer::Consumer<pull::Config>, Error> {
        let stream = self.stream().await?;
        if self.lane.fence.is_some() {
            // A partition's consumer is made when its lease is taken, from
            // where the last one stood; one that is gone was replaced by
            // the partition's next holder, and is not made again.
            return stream
                .get_consumer(&self.lane.name)
                .await
                .map_err(|error| self.nats(error));
        }
        stream
            .get_or_create_consumer(
                &self.options.durable,
                pull::Config {
                    durable_name: Some(self.options.durable.clone()),
                    filter_subject: self.options.filter_subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    max_deliver: self.options.max_deliver(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| self.nats(error))
    }

    /// Processes one message: [`commit`](Self::commit), then
    /// [`acknowledge`](Self::acknowledge).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn process(&self, message: jetstream::Message) -> Result<Outcome, Error> {
        let committed = self.commit(message).await?;
        self.acknowledge(committed).await
    }

    /// The first half of [`process`](Self::process): decodes the message,
    /// and either commits the handler's writes with the inbox row, or
    /// finds the message processed before, or (on failure, a panic
    /// included) decides between a retry and a dead letter. Nothing is
    /// acknowledged yet.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn commit(&self, message: jetstream::Message) -> Result<Unacknowledged, Error> {
        let event = Decoded::for_consumer(&message, &self.options.durable);
        let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
        let outcome = self.outcome_of(&message, &event, attempt).await?;
        Ok(Unacknowledged { message, outcome })
    }

    /// What becomes of `message` (decoded as `event`) at attempt `attempt`
    /// (see [`commit`](Self::commit)), counted, logged and told to the
    /// hook: the one path of [`process`](Self::process) and
    /// [`run`](Self::run).
    async fn outcome_of(
        &self,
        message: &jetstream::Message,
        event: &Decoded,
        attempt: i64,
    ) -> Result<Outcome, Error> {
        let outcome = self.decide(message, event, attempt).await?;
        let identity = match event {
            Decoded::Event(event) => Some((event.source.as_str(), event.id.as_str())),
            _ => None,
        };
        let observed = Observed {
            consumer: &self.options.durable,
            subject: message.subject.as_str(),
            identity,
            attempt,
            outcome: &outcome,
        };
        observe::observe(&observed, message, self.hook.as_ref());
        Ok(outcome)
    }

    /// [`outcome_of`](Self::outcome_of), before it is observed.
    async fn decide(
        &self,
        message: &jetstream::Message,
        event: &Decoded,
        attempt: i64,
    ) -> Result<Outcome, Error> {
        let event = match event {
            Decoded::Event(event) => event,
            Decoded::OwnDeadLetter => return Ok(Outcome::AlreadyProcessed),
            Decoded::NotACloudEvent(reason) => {
                let id = dead_letter::fallback_id(message);
                // Delivered again after it was given up on (its termination
                // lost): parked, logged and published once.
                let parked = self
                    .inbox
                    .parked_reason(self.key("", &id))
                    .await
                    .map_err(|error| self.store(error))?;
                if parked.is_none() {
                    self.dead_letter(message, "", &id, reason, attempt).await?;
                }
                return Ok(Outcome::DeadLettered {
                    reason: reason.clone(),
                });
            }
        };
        let key = self.key(&event.source, &event.id);
        let mut transaction = self
            .inbox
            .begin()
            .await
            .map_err(|error| self.store(error))?;
        // A partition's writer proves its lease first: one that lost it
        // (frozen, cut off) writes nothing.
        if let Some(fence) = &self.lane.fence {
            let held = fence
                .holds(&self.inbox, &mut transaction)
                .await
                .map_err(|error| self.store(error))?;
            if !held {
                return Err(Error::PartitionLost {
                    consumer: self.options.durable.clone(),
                    partition: fence.partition(),
                });
            }
        }
        let first_time = self
            .inbox
            .record(&mut transaction, key)
            .await
            .map_err(|error| self.store(error))?;
        if !first_time {
            return Ok(Outcome::AlreadyProcessed);
        }
        // Delivered again after it was given up on (its termination lost,
        // or its redelivery queued behind it while it was retried, or
        // through the partition's earlier JetStream consumer): it stays a
        // dead letter, and its stream's later messages go on.
        let sequence = message.info().map_or(0, |info| info.stream_sequence);
        if (attempt > 1 || sequence <= self.lane.redelivered_through)
            && let Some(reason) = self
                .inbox
                .parked_reason(key)
                .await
                .map_err(|error| self.store(error))?
        {
            return Ok(Outcome::DeadLettered { reason });
        }
        // Delivered once more than the attempts allow: every delivery so far
        // ended without an outcome (the consumer died or froze handling it,
        // a message that crashes its process, say). JetStream delivers it
        // this once more so that it is given up on visibly, not dropped.
        if attempt > i64::from(self.options.max_attempts.max(1)) {
            drop(transaction);
            let reason = format!(
                "delivered {attempt} times without an outcome: the consumer died or froze handling it each time"
            );
            self.dead_letter(message, &event.source, &event.id, &reason, attempt)
                .await?;
            return Ok(Outcome::DeadLettered { reason });
        }
        let handled = unwind::caught(self.handler.handle(event, I::connection(&mut transaction)))
            .await
            .unwrap_or_else(|panic| Err(format!("the handler panicked: {panic}").into()));
        match handled {
            Ok(()) => {
                self.inbox
                    .commit(transaction)
                    .await
                    .map_err(|error| self.store(error))?;
                Ok(Outcome::Handled)
            }
            Err(error) => {
                drop(transaction);
                let reason = error.to_string();
                if attempt >= i64::from(self.options.max_attempts.max(1)) {
                    self.dead_letter(message, &event.source, &event.id, &reason, attempt)
                        .await?;
                    return Ok(Outcome::DeadLettered { reason });
                }
                Ok(Outcome::Retrying {
                    delivered: attempt,
                    reason,
                })
            }
        }
    }

    /// The delay before the retry that follows attempt `attempt`.
    fn backoff(&self, attempt: i64) -> Duration {
        let retry = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
        self.options.backoff.delay(retry)
    }

    /// The second half of [`process`](Self::process): acknowledges a
    /// processed message, asks for a delayed redelivery of a failed one, or
    /// tells JetStream to stop delivering a dead letter.
    ///
    /// # Errors
    ///
    /// When NATS fails; a message not acknowledged is delivered again, and
    /// the inbox recognises it.
    pub async fn acknowledge(&self, committed: Unacknowledged) -> Result<Outcome, Error> {
        self.settle(&committed.message, &committed.outcome).await?;
        Ok(committed.outcome)
    }

    /// Tells JetStream what became of `message`.
    async fn settle(&self, message: &jetstream::Message, outcome: &Outcome) -> Result<(), Error> {
        let kind = match outcome {
            Outcome::Handled | Outcome::AlreadyProcessed => AckKind::Ack,
            Outcome::Retrying { delivered, .. } => AckKind::Nak(Some(self.backoff(*delivered))),
            Outcome::DeadLettered { .. } => AckKind::Term,
        };
        message
            .ack_with(kind)
            .await
            .map_err(|error| self.nats(error))
    }
}

/// A message as the consumer reads it.
pub(super) enum Decoded {
    /// A CloudEvent to handle.
    Event(CloudEvent),
    /// A copy of a dead letter this consumer published (its dead-letter
    /// subject is captured by the stream it reads): not handled again.
    OwnDeadLetter,
    /// Not a CloudEvent: why.
    NotACloudEvent(String),
}

impl Decoded {
    /// Reads `message`.
    pub(super) fn of(message: &jetstream::Message) -> Self {
        match CloudEvent::decode(message.headers.as_ref(), &message.payload) {
            Ok(event) => Self::Event(event),
            Err(error) => Self::NotACloudEvent(format!("not a CloudEvent: {error}")),
        }
    }

    /// Reads `message` for the consumer `durable`: its own dead letters
    /// are recognised.
    pub(super) fn for_consumer(message: &jetstream::Message, durable: &str) -> Self {
        let own = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(dead_letter::CONSUMER_HEADER))
            .is_some_and(|consumer| consumer.as_str() == durable);
        if own {
            Self::OwnDeadLetter
        } else {
            Self::of(message)
        }
    }
}

/// The next item of `stream`.
pub(super) async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|context| std::pin::Pin::new(&mut *stream).poll_next(context)).await
}
