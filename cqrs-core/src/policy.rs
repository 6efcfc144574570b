//! The command pipeline's policies: retrying on conflicts, taking snapshots.

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
