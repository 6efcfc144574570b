//! How a projection runner behaves: batch size, lease, polling, failures.

use std::time::Duration;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// How many times an event is tried in all (at least 1).
    pub max_attempts: u32,
    /// The pause before the first retry; each retry doubles it.
    pub initial_backoff: Duration,
    /// The longest pause between two attempts.
    pub max_backoff: Duration,
    /// What happens when the attempts are used up.
    pub on_exhausted: OnExhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            on_exhausted: OnExhausted::Stop,
        }
    }
}

impl FailurePolicy {
    /// The pause before attempt `attempt` (2 for the first retry): exponential,
    /// capped, with up to 50 % of random jitter taken off so that runners that
    /// failed together do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1_u32 << doublings)
            .min(self.max_backoff);
        let jitter = (uuid::Uuid::now_v7().as_u128() & 0xffff) as f64 / f64::from(u16::MAX);
        full.mul_f64(1.0 - 0.5 * jitter)
    }
}

/// A projection runner's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerOptions {
    /// How many events one transaction applies.
    pub batch_size: usize,
    /// How many bytes of payload a batch holds at most (its first event is
    /// read whatever its size), so that large events cannot make a runner's
    /// memory grow with `batch_size`.
    pub batch_bytes: usize,
    /// How long a lease lasts without renewal (default 10 s); another runner
    /// takes over after it expires. A runner that stops cleanly releases its
    /// lease at once; one that crashes or freezes holds it until it lapses,
    /// so this is how long a restart after a crash waits. Shorter means a
    /// faster takeover but more renewals (one every half lease) and a
    /// tighter bound on each statement the projector runs. It also bounds the runner's transactions: the
    /// server ends one that is idle, or runs one statement, or waits for a
    /// lock, for longer than a third of it (see
    /// [`transaction_bound`](Self::transaction_bound)), so a frozen or cut-off
    /// runner never holds the projection (nor the log's horizon) past its
    /// lease.
    pub lease_duration: Duration,
    /// How often an idle runner looks for events even without a notification.
    pub poll_interval: Duration,
    /// What to do with events the projector fails on.
    pub failure: FailurePolicy,
}

impl Default for RunnerOptions {
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
    /// The longest a runner's transaction may stay idle, run one statement
    /// or wait for one lock before the server ends it: a third of the lease
    /// (at least 100 ms). A projector that needs longer for one event fails
    /// on it, and the failure policy retries, parks or stops.
    pub fn transaction_bound(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let policy = FailurePolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            on_exhausted: OnExhausted::Park,
        };
        for (attempt, full_ms) in [
            (2, 100),
            (3, 200),
            (4, 400),
            (5, 800),
            (6, 1000),
            (30, 1000),
        ] {
            let pause = policy.backoff(attempt);
            let full = Duration::from_millis(full_ms);
            assert!(
                pause <= full && pause >= full / 2,
                "attempt {attempt}: {pause:?}"
            );
        }
    }
}
