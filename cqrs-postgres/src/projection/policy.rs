//! How a projection runner behaves: batch size, lease, polling, failures.

use std::time::Duration;

use cqrskit_core::Backoff;

/// What to do with an event the projector keeps failing on.
///
/// How to choose: [`Stop`](Self::Stop) when the read model combines streams
/// (a total, a ranking), where any event left out makes every answer wrong;
/// [`ParkStream`](Self::ParkStream) when each of its rows belongs to one
/// stream (a balance per account, an order's status), so that one bad
/// stream leaves every other stream's rows current and its own rows as
/// they were, in order; [`Park`](Self::Park) when events are independent of
/// each other (notifications), where order within a stream does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExhausted {
    /// Park it in the dead-letter table with its error and move on. Parked
    /// events can be listed and replayed later.
    Park,
    /// Park it, and park every later event of its stream behind it (its
    /// stream's rows stay as they were, never applied out of order), and
    /// move on with the other streams. A replay of the dead letters applies
    /// the stream's events in order; the stream goes on once none of its
    /// dead letters is open.
    ParkStream,
    /// Stop the projection at it and report which event and why; it stays
    /// stopped (across restarts) until [`resume`](crate::ProjectionRunner::resume)d.
    Stop,
}

/// Retries with exponential backoff and jitter, then park or stop.
///
/// Built like every options type: `Default`, then setters named after the
/// setting (`get_*` reads one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) on_exhausted: OnExhausted,
}

impl Default for FailurePolicy {
    /// Five attempts, 100 ms doubling up to 10 s between them, then stop.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            on_exhausted: OnExhausted::Stop,
        }
    }
}

impl FailurePolicy {
    /// How many times an event is tried in all (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The pauses between attempts.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// What happens when the attempts are used up.
    #[must_use]
    pub fn on_exhausted(mut self, on_exhausted: OnExhausted) -> Self {
        self.on_exhausted = on_exhausted;
        self
    }

    /// How many times an event is tried in all.
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The pauses between attempts.
    pub fn get_backoff(&self) -> Backoff {
        self.backoff
    }

    /// What happens when the attempts are used up.
    pub fn get_on_exhausted(&self) -> OnExhausted {
        self.on_exhausted
    }

    /// The pause before attempt `attempt` (2 for the first retry).
    pub(crate) fn pause_before(&self, attempt: u32) -> Duration {
        self.backoff.delay(attempt.saturating_sub(1))
    }
}

/// A projection runner's settings.
///
/// Built like every options type: `Default`, then setters named after the
/// setting (`get_*` reads one), and given to the runner at construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerOptions {
    pub(crate) batch_size: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) lease_duration: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) failure: FailurePolicy,
}

impl Default for RunnerOptions {
    /// 500 events or 16 MiB a batch, a 10 s lease, a 5 s poll, and the
    /// default [`FailurePolicy`].
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_bytes: 16 * 1024 * 1024,
            lease_duration: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            failure: FailurePolicy::default(),
        }
    }
}

impl RunnerOptions {
    /// How many events one transaction applies.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How many bytes of payload a batch holds at most (its first event is
    /// read whatever its size), so that large events cannot make a runner's
    /// memory grow with the batch size.
    #[must_use]
    pub fn batch_bytes(mut self, batch_bytes: usize) -> Self {
        self.batch_bytes = batch_bytes;
        self
    }

    /// How long a lease lasts without renewal (default 10 s); another
    /// runner takes over after it expires. A runner that stops cleanly
    /// releases its lease at once; one that crashes or freezes holds it
    /// until it lapses, so this is how long a restart after a crash waits.
    /// Shorter means a faster takeover but more renewals (one every half
    /// lease) and a tighter bound on each statement the projector runs. It
    /// also bounds the runner's transactions: the server ends one that is
    /// idle, or runs one statement, or waits for a lock, for longer than a
    /// third of it (see [`transaction_bound`](Self::transaction_bound)), so
    /// a frozen or cut-off runner never holds the projection (nor the log's
    /// horizon) past its lease.
    #[must_use]
    pub fn lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self
    }

    /// How often an idle runner looks for events even without a
    /// notification.
    #[must_use]
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// What to do with events the projector fails on.
    #[must_use]
    pub fn failure(mut self, failure: FailurePolicy) -> Self {
        self.failure = failure;
        self
    }

    /// How many events one transaction applies.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    /// How many bytes of payload a batch holds at most.
    pub fn get_batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// How long a lease lasts without renewal.
    pub fn get_lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How often an idle runner looks for events.
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// What to do with events the projector fails on.
    pub fn get_failure(&self) -> FailurePolicy {
        self.failure
    }

    /// The longest a runner's transaction may stay idle, run one statement
    /// or wait for one lock before the server ends it: a third of the lease
    /// (at least 100 ms). A projector that needs longer for one event fails
    /// on it, and the failure policy retries, parks or stops.
    pub fn transaction_bound(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_millis(100))
    }
}
