//! How a PostgreSQL store writes and wakes its readers, given once with
//! [`PostgresEventStore::with_options`](super::PostgresEventStore::with_options).

use std::time::Duration;

use super::GroupCommit;

/// The settings of a [`PostgresEventStore`](super::PostgresEventStore): how
/// appends are grouped into commits, and how often readers of the log are
/// woken. Its schema is not a setting but the store's identity, given with
/// [`with_schema`](super::PostgresEventStore::with_schema).
///
/// ```
/// use std::time::Duration;
/// use cqrskit::postgres::{GroupCommit, StoreOptions};
///
/// let options = StoreOptions::default()
///     .group_commit(GroupCommit::default().max_in_flight(4))
///     .notify_interval(Duration::from_millis(20));
/// assert_eq!(options.get_notify_interval(), Duration::from_millis(20));
///
/// // Every append with a statement and a commit of its own.
/// assert_eq!(StoreOptions::default().group_commit(None).get_group_commit(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    group_commit: Option<GroupCommit>,
    notify_interval: Duration,
}

impl Default for StoreOptions {
    /// Group commit on with [`GroupCommit::default`]; readers woken at
    /// most every 5 ms while appends keep coming.
    fn default() -> Self {
        Self {
            group_commit: Some(GroupCommit::default()),
            notify_interval: Duration::from_millis(5),
        }
    }
}

impl StoreOptions {
    /// How appends of concurrent commands to different streams are written
    /// together: one statement and one commit per group instead of one per
    /// append. `None` writes every append with a statement and a commit of
    /// its own, whatever else is being written.
    ///
    /// It pays when many commands run at once on different aggregates (a
    /// service under load): commits, not statements, bound a store's
    /// writes, and a group of ten costs about one. Each append keeps its
    /// own outcome: one stream's conflict fails no other append of its
    /// group. While no group forms, appends are written at once by their
    /// callers, alone, as without grouping (up to
    /// [`GroupCommit::max_alone`] at a time: commands one after another, or
    /// a few at once); beyond that, appends are handed to the store's group
    /// writer, and keep joining groups while groups keep forming. Appends
    /// that expect any version, or carry a snapshot, or run in
    /// [`append_in`](super::PostgresEventStore::append_in), are never
    /// grouped. Figures in `docs/performance.md`.
    pub fn group_commit(mut self, group_commit: impl Into<Option<GroupCommit>>) -> Self {
        self.group_commit = group_commit.into();
        self
    }

    /// How often, at most, the store wakes log readers while appends keep
    /// coming (default 5 ms). The first append after a quiet spell wakes
    /// them at once; later ones within the interval share one notification,
    /// so a projection sees a busy stream at most this much later than it
    /// could. Zero notifies after every append, at the cost of one more
    /// statement per burst of commits.
    pub fn notify_interval(mut self, interval: Duration) -> Self {
        self.notify_interval = interval;
        self
    }

    /// See [`group_commit`](Self::group_commit).
    pub fn get_group_commit(&self) -> Option<GroupCommit> {
        self.group_commit
    }

    /// See [`notify_interval`](Self::notify_interval).
    pub fn get_notify_interval(&self) -> Duration {
        self.notify_interval
    }
}
