//! Read-your-writes: waiting until a projection has applied what a command
//! wrote, so a query right after the command sees it.

use std::time::{Duration, Instant};

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::projection::checkpoint;
use crate::projection::error::{RunnerError, db};

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
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, RunnerError> {
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
    async fn has_applied(&self, position: Position) -> Result<bool, RunnerError> {
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        // language=SQL
        let applied = database
            .query_scalar(&format!(
                "SELECT NOT EXISTS (
                     SELECT 1 FROM {events} e, {projections} p
                     WHERE p.name = $1
                       AND (e.transaction_id, e.position)
                           > (p.checkpoint_transaction::text::xid8, p.checkpoint_sequence)
                       AND (e.transaction_id, e.position) <= ($2::bigint::text::xid8, $3)
                       AND ($4::text[] IS NULL OR e.event_type = ANY($4))
                       AND ($5::smallint IS NULL OR e.slice BETWEEN $5 AND $6)
                 ) AND EXISTS (SELECT 1 FROM {projections} WHERE name = $1)",
                events = self.events,
                projections = self.projections,
            ))
            .bind(self.name())
            .bind(checkpoint::as_i64(position.transaction))
            .bind(checkpoint::as_i64(position.sequence))
            .bind((!self.filter.event_types.is_empty()).then_some(&self.filter.event_types))
            .bind(self.slice_bounds().map(|(first, _)| first))
            .bind(self.slice_bounds().map(|(_, last)| last))
            .fetch_one(&mut *session)
            .await
            .map_err(db)?;
        session.finish().await.map_err(db)?;
        Ok(applied)
    }
}
