//! Events that are committed but not yet safe to read: the log is read only
//! below the oldest append still in flight, so an event committed while an
//! older append is open waits behind that horizon. A runner that went back to
//! sleep until the next notification would leave it waiting for another write
//! or the poll interval; it looks again soon instead, and says which session
//! holds it back when the wait grows long.

use std::time::{Duration, Instant};

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::{Error, db};
use crate::projection::projection_row;

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
    pub(super) async fn events_pending(&self) -> Result<bool, Error> {
        self.events_pending_through(None).await
    }

    /// Whether the log holds events of the projection's types (and slices)
    /// after its checkpoint, up to `upto` when given; a projection that has
    /// no row yet has everything pending.
    pub(super) async fn events_pending_through(
        &self,
        upto: Option<Position>,
    ) -> Result<bool, Error> {
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        // language=SQL
        let pending = database
            .query_scalar(&format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {projections} WHERE name = $1)
                     OR EXISTS (
                 SELECT 1 FROM {events} e, {projections} p
                 WHERE p.name = $1
                   AND (e.transaction_id, e.position)
                       > (p.checkpoint_transaction::text::xid8, p.checkpoint_sequence)
                   AND ($5::bigint IS NULL
                        OR (e.transaction_id, e.position) <= ($5::bigint::text::xid8, $6))
                   AND ($2::text[] IS NULL OR e.event_type = ANY($2))
                   AND ($3::smallint IS NULL OR e.slice BETWEEN $3 AND $4)
             )",
                events = self.events,
                projections = self.projections,
            ))
            .bind(self.name())
            .bind(self.selection.event_types())
            .bind(self.selection.slice_bounds().map(|(first, _)| first))
            .bind(self.selection.slice_bounds().map(|(_, last)| last))
            .bind(upto.map(|upto| projection_row::as_i64(upto.transaction)))
            .bind(upto.map(|upto| projection_row::as_i64(upto.sequence)))
            .fetch_one(&mut *session)
            .await
            .map_err(db)?;
        session.finish().await.map_err(db)?;
        Ok(pending)
    }
}

/// How long events may wait behind the horizon before the runner says so,
/// and how often it repeats itself while they still wait.
const HELD_BACK_REPORT_AFTER: Duration = Duration::from_secs(1);
const HELD_BACK_REPEAT: Duration = Duration::from_secs(30);

/// Since when a runner's events wait behind the horizon, and when it last
/// said so.
#[derive(Default)]
pub(super) struct HeldBack {
    since: Option<Instant>,
    reported: Option<Instant>,
}

impl HeldBack {
    /// Events still wait: after a while, names the append holding them back.
    pub(super) async fn still<P>(&mut self, runner: &ProjectionRunner<P>)
    where
        P: Projector<PgConnection> + ?Sized + 'static,
    {
        let since = *self.since.get_or_insert_with(Instant::now);
        let due = self
            .reported
            .is_none_or(|at| at.elapsed() >= HELD_BACK_REPEAT);
        if since.elapsed() < HELD_BACK_REPORT_AFTER || !due {
            return;
        }
        self.reported = Some(Instant::now());
        match runner.store.oldest_open_append().await {
            Ok(Some(append)) => tracing::warn!(
                projection = runner.name(),
                waited_ms = since.elapsed().as_millis() as u64,
                pid = append.pid,
                application_name = %append.application_name,
                transaction_started = ?append.started_at,
                state = ?append.state,
                query = %append.query,
                "events wait behind an append still in flight"
            ),
            _ => tracing::warn!(
                projection = runner.name(),
                waited_ms = since.elapsed().as_millis() as u64,
                "events wait behind the log's horizon"
            ),
        }
    }

    /// Nothing waits any more.
    pub(super) fn over(&mut self) {
        self.since = None;
        self.reported = None;
    }
}
