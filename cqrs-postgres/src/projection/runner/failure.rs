//! What happens when the projector fails on an event: the events before it
//! are committed, the event is retried with backoff, then parked in the
//! dead-letter table or the projection stopped at it, as the policy says.

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use super::apply::roll_back;
use super::holder::Guarded;
use crate::error::{Error, StoppedAt, db};
use crate::projection::policy::OnExhausted;
use crate::row::LogRow;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Applies and commits the events before a failing one. Returns how many
    /// were applied (fewer than asked if the projector now fails earlier).
    pub(super) async fn apply_prefix(
        &self,
        rows: &[LogRow],
        from: Position,
    ) -> Result<usize, Error> {
        let Some(last) = rows.last().map(|row| row.event().position) else {
            return Ok(0);
        };
        let Some(Guarded { mut tx, held, .. }) = self.guarded_at(from).await? else {
            return Ok(0);
        };
        if self.apply_all(&mut tx, rows).await.is_err() {
            roll_back(tx).await;
            return Ok(0);
        }
        self.advance(&mut tx, from, last, held).await?;
        tx.commit().await.map_err(db)?;
        Ok(rows.len())
    }

    /// Retries `event` with backoff; then parks it or stops, as configured.
    pub(super) async fn retry_or_give_up(
        &self,
        row: &LogRow,
        mut reason: String,
        before: Position,
    ) -> Result<(), Error> {
        let event = row.event();
        let policy = self.options.failure;
        let mut attempts = 1;
        while attempts < policy.max_attempts.max(1) {
            attempts += 1;
            tracing::warn!(
                projection = self.name(),
                owner = %self.owner,
                event_id = %event.event_id,
                event_type = %event.event_type,
                stream = %event.stream,
                position = %event.position,
                attempt = attempts,
                error = %reason,
                "retrying event"
            );
            tokio::time::sleep(policy.pause_before(attempts)).await;
            let Some(Guarded { mut tx, held, .. }) = self.guarded_at(before).await? else {
                // Another runner moved on meanwhile; nothing left for us here.
                return Ok(());
            };
            match self.apply_one(&mut tx, row).await {
                Ok(()) => {
                    self.advance(&mut tx, before, event.position, held).await?;
                    match tx.commit().await {
                        Ok(()) => return Ok(()),
                        // The server refused the COMMIT (a deferred
                        // constraint, a serialization failure): this event's
                        // failure like any other.
                        Err(sqlx::Error::Database(error)) => {
                            reason = format!("the commit was refused: {error}");
                        }
                        Err(error) => return Err(db(error)),
                    }
                }
                Err(error) => {
                    roll_back(tx).await;
                    reason = error;
                }
            }
        }

        let Some(Guarded { mut tx, held, .. }) = self.guarded_at(before).await? else {
            return Ok(());
        };
        match policy.on_exhausted {
            OnExhausted::Park | OnExhausted::ParkStream => {
                self.dead_letter_table()
                    .park(&mut tx, self.name(), event, &reason, attempts)
                    .await
                    .map_err(db)?;
                self.advance(&mut tx, before, event.position, held).await?;
                tx.commit().await.map_err(db)?;
                if policy.on_exhausted == OnExhausted::ParkStream {
                    self.state.held.hold(&event.stream);
                }
                tracing::error!(
                    projection = self.name(),
                    owner = %self.owner,
                    event_id = %event.event_id,
                    event_type = %event.event_type,
                    stream = %event.stream,
                    position = %event.position,
                    error = %reason,
                    attempts,
                    stream_held = policy.on_exhausted == OnExhausted::ParkStream,
                    "event parked in the dead-letter table"
                );
                self.report_dead_letters().await;
                Ok(())
            }
            OnExhausted::Stop => {
                let stop = Error::Stopped {
                    projection: self.name().to_owned(),
                    at: Box::new(StoppedAt {
                        event_id: event.event_id,
                        event_type: event.event_type.clone(),
                        stream: event.stream.clone(),
                        version: event.version,
                        position: event.position,
                    }),
                    attempts,
                    reason,
                };
                self.row()
                    .stop(&mut tx, &stop.to_string())
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                // Returned, not logged: whoever handles it logs it once
                // (the host does), and its message names the event.
                Err(stop)
            }
        }
    }

    pub(super) async fn clear_stop(&self, tx: &mut PgConnection) -> Result<(), Error> {
        self.row().clear_stop(tx).await.map(drop).map_err(db)
    }
}
