//! Events that are committed but not yet safe to read: the log is read only
//! below the oldest running transaction, so an event committed while any
//! other transaction in the database is open waits behind that horizon. A
//! runner that went back to sleep until the next notification would leave it
//! waiting for an unrelated write or the poll interval; it looks again soon
//! instead.

use std::time::Duration;

use cqrskit_core::Projector;
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::projection::error::{RunnerError, db};

/// The first pause before looking again; each later one doubles, up to
/// [`MAX_PAUSE`] (or the poll interval, when shorter).
pub(super) const FIRST_PAUSE: Duration = Duration::from_millis(5);
pub(super) const MAX_PAUSE: Duration = Duration::from_millis(250);

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Whether the log holds events of the projection's types after its
    /// checkpoint. Asked right after a catch-up, a yes means they are behind
    /// the horizon.
    pub(super) async fn events_pending(&self) -> Result<bool, RunnerError> {
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        // language=SQL
        let pending = database
            .query_scalar(&format!(
                "SELECT EXISTS (
                 SELECT 1 FROM {events} e, {projections} p
                 WHERE p.name = $1
                   AND (e.transaction_id, e.position)
                       > (p.checkpoint_transaction::text::xid8, p.checkpoint_sequence)
                   AND ($2::text[] IS NULL OR e.event_type = ANY($2))
             )",
                events = self.events,
                projections = self.projections,
            ))
            .bind(self.name())
            .bind((!self.filter.event_types.is_empty()).then_some(&self.filter.event_types))
            .fetch_one(&mut *session)
            .await
            .map_err(db)?;
        session.finish().await.map_err(db)?;
        Ok(pending)
    }
}
