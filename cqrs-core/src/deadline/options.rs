//! How a deadline runner works.

use std::time::Duration;

/// How a deadline runner works.
///
/// Built like every options type: `Default`, then setters named after the
/// setting (`get_*` reads one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineOptions {
    pub(crate) claim: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) batch_size: usize,
}

impl Default for DeadlineOptions {
    /// A 30 s claim, a 1 s poll, 100 at a time.
    fn default() -> Self {
        Self {
            claim: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            batch_size: 100,
        }
    }
}

impl DeadlineOptions {
    /// How long a runner's claim on a deadline holds: a runner that dies
    /// while delivering leaves it to another after this long.
    #[must_use]
    pub fn claim(mut self, claim: Duration) -> Self {
        self.claim = claim;
        self
    }

    /// The longest a running runner sleeps before looking for due
    /// deadlines again (it wakes earlier for the next one it knows of).
    #[must_use]
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Deadlines claimed at a time.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How long a claim holds.
    pub fn get_claim(&self) -> Duration {
        self.claim
    }

    /// The longest sleep between looks for due deadlines.
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Deadlines claimed at a time.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}
