//! The command pipeline's policies: retrying on conflicts, taking snapshots,
//! and the options that gather them.

/// What the pipeline does when another writer changed the aggregate between
/// loading it and appending.
///
/// On a conflict the pipeline reloads the aggregate and decides again, so the
/// command is judged against the newest state; domain rules still hold. Retries
/// follow each other at once: the reload is the only pause a conflict needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times to retry after the first attempt (0 = report the conflict).
    pub max_retries: u32,
}

impl RetryPolicy {
    /// Never retry: the first conflict is reported as [`CommandError::Conflict`](crate::CommandError::Conflict).
    pub const fn none() -> Self {
        Self { max_retries: 0 }
    }

    /// Retry up to `max_retries` times.
    pub const fn retries(max_retries: u32) -> Self {
        Self { max_retries }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::none()
    }
}

/// When the pipeline saves a snapshot of an aggregate's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Never: always rebuild from the whole stream.
    #[default]
    Never,
    /// Whenever a command's events make the stream cross a multiple of this
    /// many events.
    Every(u64),
}

impl SnapshotPolicy {
    /// Whether moving the stream from version `before` to `after` calls for a snapshot.
    pub fn is_due(self, before: u64, after: u64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Every(0) => false,
            SnapshotPolicy::Every(n) => after / n > before / n,
        }
    }
}

/// How a command pipeline works, handed over with
/// [`CommandPipeline::with_options`](crate::CommandPipeline::with_options).
///
/// Built like every options type: `Default`, then setters named after the
/// setting (`get_*` reads one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineOptions {
    state_cache: usize,
    retry: RetryPolicy,
    snapshots: SnapshotPolicy,
}

impl Default for PipelineOptions {
    /// A cache of the [`DEFAULT_STATE_CACHE`](crate::DEFAULT_STATE_CACHE)
    /// most recently used states, no retries, no snapshots.
    fn default() -> Self {
        Self {
            state_cache: crate::DEFAULT_STATE_CACHE,
            retry: RetryPolicy::none(),
            snapshots: SnapshotPolicy::Never,
        }
    }
}

impl PipelineOptions {
    /// Keeps the states of up to `capacity` recently used aggregates in
    /// memory (0 turns the cache off), so a command on one of them goes
    /// straight to deciding and appending, with no read. Safe with other
    /// writers (other processes): the append still checks the version, and
    /// only a decision the append proves is taken from a cached state. A
    /// rejection, a decision to do nothing, or a conflict (the state was
    /// stale) is decided again from a fresh load, once, before the caller
    /// sees it, so a cached state never changes an outcome, only how fast it
    /// comes. The least recently used state goes when the cache is full.
    #[must_use]
    pub fn state_cache(mut self, capacity: usize) -> Self {
        self.state_cache = capacity;
        self
    }

    /// What to do on a conflict.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// When to save a snapshot.
    #[must_use]
    pub fn snapshots(mut self, snapshots: SnapshotPolicy) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// How many aggregate states are kept in memory.
    pub fn get_state_cache(&self) -> usize {
        self.state_cache
    }

    /// What to do on a conflict.
    pub fn get_retry(&self) -> RetryPolicy {
        self.retry
    }

    /// When to save a snapshot.
    pub fn get_snapshots(&self) -> SnapshotPolicy {
        self.snapshots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_due_when_a_multiple_is_crossed() {
        let every_ten = SnapshotPolicy::Every(10);
        assert!(!every_ten.is_due(0, 9));
        assert!(every_ten.is_due(9, 10));
        assert!(every_ten.is_due(8, 13));
        assert!(!every_ten.is_due(10, 19));
        assert!(every_ten.is_due(19, 35));
        assert!(!SnapshotPolicy::Never.is_due(0, 1000));
        assert!(!SnapshotPolicy::Every(0).is_due(0, 1000));
    }
}
