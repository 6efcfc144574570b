//! Read-your-writes: waiting until a projection has applied what a command
//! wrote, so a query right after the command sees it.

use std::time::{Duration, Instant};

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::Error;

/// How often a waiting caller looks again.
const LOOK_EVERY: Duration = Duration::from_millis(10);

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Waits at most `timeout` until the projection has applied every event
    /// of its types up to `position` (a command's last event's position):
    /// `true` once it has, `false` when the time ran out (answer with a
    /// stale read model, or 503). Events of other types, or of other
    /// partitions, are not waited for, so a position the projection never
    /// reads answers at once. Whichever process runs the projection, this
    /// one only reads its checkpoint.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<bool, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_applied(position).await? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            tokio::time::sleep(left.min(LOOK_EVERY)).await;
        }
    }

    /// Whether no event of the projection's types (and slices) lies after
    /// its checkpoint and at or before `position`.
    async fn has_applied(&self, position: Position) -> Result<bool, Error> {
        Ok(!self.events_pending_through(Some(position)).await?)
    }
}
