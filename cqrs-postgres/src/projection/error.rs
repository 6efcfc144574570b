//! What can stop a projection runner.

use cqrskit_core::{BoxError, Position, StoreError, StreamId};
use uuid::Uuid;

/// Why a projection runner stopped or refused to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// Reading the log, or the runner's own tables, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This runner does not hold the projection's lease (another runner took
    /// it over, or it was never acquired); it applied nothing.
    #[error("runner `{owner}` does not hold the lease of projection `{projection}`")]
    NotLeaseholder {
        /// The projection.
        projection: String,
        /// This runner's owner id.
        owner: String,
    },
    /// The failure policy stopped the projection at a poison event. Nothing
    /// after it was applied; fix the projector or the data, then resume.
    #[error(
        "projection `{projection}` stopped at event {event_id} ({event_type}, version {version} of {stream}, position {position}) after {attempts} attempts: {reason}"
    )]
    Stopped {
        /// The projection.
        projection: String,
        /// The event it stopped at.
        event_id: Uuid,
        /// That event's type.
        event_type: String,
        /// That event's stream.
        stream: StreamId,
        /// That event's version in its stream.
        version: u64,
        /// That event's log position.
        position: Position,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The projection was stopped earlier (see [`RunnerError::Stopped`]) and
    /// has not been resumed.
    #[error("projection `{projection}` is stopped: {reason}")]
    StillStopped {
        /// The projection.
        projection: String,
        /// Why it stopped.
        reason: String,
    },
    /// The projector subscribes to other event types than the projection
    /// recorded: applying on would skip, for good, events of the added
    /// types that the checkpoint already passed (a new projector version
    /// taking over from an old one), or drop types the projection relied on
    /// (an old version coming back). Nothing was applied.
    #[error(
        "projection `{projection}` was built for other event types (added: {added:?}, removed: {removed:?});          events of added types before its checkpoint were never applied. Rebuild it (ProjectionRunner::rebuild),          or run the new projector under a new name beside it (blue/green); if the change needs no backfill,          record it with ProjectionRunner::accept_subscription"
    )]
    SubscriptionChanged {
        /// The projection.
        projection: String,
        /// Types the projector declares that the projection did not
        /// subscribe to, of which the log holds events before the checkpoint.
        added: Vec<String>,
        /// Types the projection subscribed to that the projector no longer
        /// declares.
        removed: Vec<String>,
    },
    /// The projector's setup hook failed; nothing was applied.
    #[error("setting up projection `{projection}` failed: {source}")]
    Setup {
        /// The projection.
        projection: String,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// A partitioned projection cannot be split as asked; nothing changed.
    #[error("cannot split projection `{projection}`: {reason}")]
    Rescale {
        /// The projection.
        projection: String,
        /// Why.
        reason: String,
    },
    /// The projection runs in another number of partitions than this
    /// runner was made for (1: unpartitioned): running both would apply
    /// the same events twice, so this runner refuses to take a lease.
    #[error(
        "projection `{projection}` runs in {recorded} partition(s) (1: unpartitioned), and this runner \
         was made for {configured}: it refuses to start, since both would apply the same events. \
         To change the count, stop every instance and call PartitionedRunner::split_from({recorded}) \
         on the new split (a multiple of {recorded}); for a merge, run the projector under a new \
         name (a new version, rebuilt from the start)"
    )]
    PartitionsDisagree {
        /// The projection.
        projection: String,
        /// The partitions recorded for it.
        recorded: usize,
        /// The partitions this runner was made for.
        configured: usize,
    },
    /// The runner's configuration does not fit the projector: one that
    /// requires log order ([`Projector::requires_log_order`], a relay) run
    /// in partitions or with a policy that parks events. It refuses to
    /// start; the reason names what to change.
    ///
    /// [`Projector::requires_log_order`]: cqrskit_core::Projector::requires_log_order
    #[error("projection `{projection}` refuses to start: {reason}")]
    Misconfigured {
        /// The projection.
        projection: String,
        /// What does not fit, and what to change.
        reason: String,
    },
    /// A partition's task ended by a panic outside the projector (whose
    /// panics fail their event instead).
    #[error("a partition of projection `{projection}` failed: {reason}")]
    PartitionFailed {
        /// The projection.
        projection: String,
        /// The panic.
        reason: String,
    },
    /// The projector's reset hook failed; the rebuild did not start.
    #[error("resetting projection `{projection}` failed: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
}

pub(crate) fn db(error: sqlx::Error) -> RunnerError {
    RunnerError::Store(crate::error::store_error(error))
}
