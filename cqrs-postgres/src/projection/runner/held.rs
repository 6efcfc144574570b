//! Streams held back behind a parked event ([`OnExhausted::ParkStream`]):
//! once an event of a stream is parked, every later event of that stream
//! is parked behind it, in the same transaction that would have applied
//! it, so the stream's rows stay as they were instead of moving on without
//! it; the other streams go on. The held streams are those of the
//! projection's open dead letters, read again at each batch (a replay or a
//! skip, by this runner or an operator, lets a stream go on).
//!
//! [`OnExhausted::ParkStream`]: crate::OnExhausted::ParkStream

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cqrskit_core::{Projector, StreamId};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::{Error, db};
use crate::projection::policy::OnExhausted;
use crate::row::LogRow;

/// The streams a runner holds back, as it last read them and as it parked
/// since.
#[derive(Debug, Default)]
pub(super) struct HeldStreams(Mutex<HashSet<StreamId>>);

impl HeldStreams {
    fn streams(&self) -> MutexGuard<'_, HashSet<StreamId>> {
        // Only ever replaced or added to whole: a panic leaves it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds exactly `streams` from now on.
    fn replace(&self, streams: HashSet<StreamId>) {
        *self.streams() = streams;
    }

    /// Holds `stream` back too (its event was just parked).
    pub(super) fn hold(&self, stream: &StreamId) {
        self.streams().insert(stream.clone());
    }

    /// Whether `row`'s stream is held back (an unreadable row's never is:
    /// it is parked for what it is).
    pub(super) fn holds(&self, row: &LogRow) -> bool {
        match row {
            LogRow::Readable(event) => {
                let held = self.streams();
                !held.is_empty() && held.contains(&event.stream)
            }
            LogRow::Unreadable { .. } => false,
        }
    }
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Reads the held streams again from the open dead letters, under the
    /// batch's transaction (only with [`OnExhausted::ParkStream`]).
    pub(super) async fn reload_held(&self, tx: &mut PgConnection) -> Result<(), Error> {
        if self.options.failure.on_exhausted != OnExhausted::ParkStream {
            return Ok(());
        }
        let streams = self
            .dead_letter_table()
            .open_streams(tx, self.name())
            .await
            .map_err(db)?;
        self.state.held.replace(streams);
        Ok(())
    }

    /// Parks `row`'s event behind its stream's parked event.
    pub(super) async fn park_behind(
        &self,
        tx: &mut PgConnection,
        row: &LogRow,
    ) -> Result<(), String> {
        let event = row.event();
        tracing::error!(
            projection = self.name(),
            owner = %self.owner,
            event_id = %event.event_id,
            event_type = %event.event_type,
            stream = %event.stream,
            position = %event.position,
            "event parked behind its stream's parked event"
        );
        self.dead_letter_table()
            .park(
                tx,
                self.name(),
                event,
                &format!(
                    "held behind a parked event of {}/{} (OnExhausted::ParkStream)",
                    event.stream.aggregate_type, event.stream.aggregate_id
                ),
                0,
            )
            .await
            .map_err(|error| format!("parking an event of a held stream: {error}"))
    }
}
