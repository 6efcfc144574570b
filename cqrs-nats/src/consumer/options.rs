//! Where a consumer reads and how it retries.

use std::time::Duration;

use cqrskit_core::Backoff;

/// Where a consumer reads and how it retries.
///
/// Built like every options type: a constructor for what has no default,
/// then setters named after the setting (`get_*` reads one).
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) filter_subject: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) ack_wait: Duration,
    pub(crate) dead_letter_subject: Option<String>,
    pub(crate) batch_size: usize,
}

impl ConsumerOptions {
    /// Options reading the JetStream stream `stream` as the durable
    /// consumer `durable` (JetStream keeps its progress under that name,
    /// and the inbox and dead letters are keyed by it): every subject, five
    /// attempts 100 ms apart doubling up to 10 s, a 30 s acknowledgement
    /// wait, no dead-letter subject, 100 messages a fetch.
    pub fn new(stream: impl Into<String>, durable: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: String::new(),
            max_attempts: 5,
            backoff: Backoff::default(),
            ack_wait: Duration::from_secs(30),
            dead_letter_subject: None,
            batch_size: 100,
        }
    }

    /// Only messages on these subjects (wildcards allowed); all when empty.
    #[must_use]
    pub fn filter_subject(mut self, filter_subject: impl Into<String>) -> Self {
        self.filter_subject = filter_subject.into();
        self
    }

    /// Attempts at a message before it is dead-lettered (at least 1): its
    /// deliveries, and its retries in place under
    /// [`Consumer::run`](crate::Consumer::run).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The pauses before each retry after a failure.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long JetStream waits for an acknowledgement before it delivers
    /// a message again (a consumer that died holding it).
    #[must_use]
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Where dead letters are published (besides the table). A stream must
    /// capture the subject; a dead letter it cannot be published to stays
    /// in the table with the reason (see
    /// [`ParkedMessage::publish_error`](cqrskit_core::inbox::ParkedMessage::publish_error))
    /// and the consumer goes on.
    #[must_use]
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_letter_subject = Some(subject.into());
        self
    }

    /// Messages fetched per request.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// JetStream's `max_deliver` for the consumer: one delivery more than
    /// the attempts, so that a message whose every attempt ended without an
    /// outcome (its consumer died handling it) comes once more, to be
    /// dead-lettered visibly instead of dropped by JetStream.
    pub(crate) fn max_deliver(&self) -> i64 {
        i64::from(self.max_attempts.max(1)) + 1
    }

    /// The JetStream stream read.
    pub fn get_stream(&self) -> &str {
        &self.stream
    }

    /// The durable consumer's name.
    pub fn get_durable(&self) -> &str {
        &self.durable
    }

    /// The subjects read (all when empty).
    pub fn get_filter_subject(&self) -> &str {
        &self.filter_subject
    }

    /// Attempts at a message before it is dead-lettered.
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The pauses before each retry.
    pub fn get_backoff(&self) -> Backoff {
        self.backoff
    }

    /// How long JetStream waits for an acknowledgement.
    pub fn get_ack_wait(&self) -> Duration {
        self.ack_wait
    }

    /// Where dead letters are published, if anywhere.
    pub fn get_dead_letter_subject(&self) -> Option<&str> {
        self.dead_letter_subject.as_deref()
    }

    /// Messages fetched per request.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}
