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
use std::sync::PoisonError;

use cqrskit_core::{Projector, StreamId};
use sqlx::{PgConnection, Row};

use super::ProjectionRunner;
use crate::error::{Error, db};
use crate::projection::policy::OnExhausted;
use crate::row::LogRow;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<StreamId>> {
        // Only ever replaced or added to whole: a panic leaves it usable.
        self.state
            .held_streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the held streams again, in `tx`, when the policy holds streams.
    pub(super) async fn reload_held(&self, tx: &mut PgConnection) -> Result<(), Error> {
        if self.options.failure.on_exhausted != OnExhausted::ParkStream {
            return Ok(());
        }
        // language=SQL
        let rows = self
            .store
            .database()
            .query(&format!(
                "SELECT DISTINCT aggregate_type, aggregate_id FROM {}
                 WHERE projection = $1 AND resolved_at IS NULL",
                self.dead_letters
            ))
            .bind(self.name())
            .fetch_all(tx)
            .await
            .map_err(db)?;
        let streams = rows
            .iter()
            .map(|row| {
                Ok(StreamId::new(
                    row.try_get::<String, _>(0)?,
                    row.try_get::<String, _>(1)?,
                ))
            })
            .collect::<Result<HashSet<_>, sqlx::Error>>()
            .map_err(db)?;
        *self.held() = streams;
        Ok(())
    }

    /// Holds `stream` from now on (an event of it was just parked).
    pub(super) fn hold(&self, stream: &StreamId) {
        self.held().insert(stream.clone());
    }

    /// Whether `row`'s stream is held (never for a row that cannot be read:
    /// it fails, and the policy parks it).
    pub(super) fn is_held(&self, row: &LogRow) -> bool {
        match row {
            LogRow::Readable(event) => {
                let held = self.held();
                !held.is_empty() && held.contains(&event.stream)
            }
            LogRow::Unreadable { .. } => false,
        }
    }

    /// Parks `row`'s event behind the parked event of its stream, in `tx`.
    pub(super) async fn park_behind(
        &self,
        tx: &mut PgConnection,
        row: &LogRow,
    ) -> Result<(), String> {
        let event = row.event();
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
