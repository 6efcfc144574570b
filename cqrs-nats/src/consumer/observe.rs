//! What a consumer did with each message, told to its metrics, its log and
//! the application's hook, in one place.

use std::sync::Arc;

use async_nats::jetstream;

use super::Outcome;
use crate::telemetry;

/// One message's outcome, as a consumer's hook sees it (see
/// [`Consumer::with_outcome_hook`](super::Consumer::with_outcome_hook)).
#[derive(Debug)]
pub struct Observed<'a> {
    /// The consumer's durable name.
    pub consumer: &'a str,
    /// The message's subject.
    pub subject: &'a str,
    /// The CloudEvent's `source` and `id`, when the message is one.
    pub identity: Option<(&'a str, &'a str)>,
    /// Which delivery of the message this was (1 for the first).
    pub attempt: i64,
    /// What came of it.
    pub outcome: &'a Outcome,
}

/// A hook called with each message's outcome, once its writes committed or
/// its failure was decided (before it is acknowledged).
pub type OutcomeHook = Arc<dyn Fn(&Observed<'_>) + Send + Sync>;

impl Outcome {
    /// The outcome's label in the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::AlreadyProcessed => "already_processed",
            Outcome::Retrying { .. } => "retrying",
            Outcome::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// Counts `observed`, sets the consumer's lag from `message`, logs what an
/// operator should see, and calls `hook`.
pub(super) fn observe(
    observed: &Observed<'_>,
    message: &jetstream::Message,
    hook: Option<&OutcomeHook>,
) {
    let consumer = observed.consumer.to_owned();
    metrics::counter!(telemetry::CONSUMER_MESSAGES, "consumer" => consumer.clone(), "outcome" => observed.outcome.label())
        .increment(1);
    if let Ok(info) = message.info() {
        metrics::gauge!(telemetry::CONSUMER_PENDING, "consumer" => consumer)
            .set(info.pending as f64);
    }
    // A retry is logged where `run` waits for it, a dead letter where it
    // is parked: here only what goes well, at debug level.
    if matches!(
        observed.outcome,
        Outcome::Handled | Outcome::AlreadyProcessed
    ) {
        let (source, id) = observed.identity.unwrap_or(("", ""));
        tracing::debug!(
            consumer = observed.consumer,
            subject = observed.subject,
            source,
            id,
            outcome = observed.outcome.label(),
            "message taken"
        );
    }
    if let Some(hook) = hook {
        hook(observed);
    }
}
