//! One step of a runner: a batch read after the checkpoint, applied and
//! committed with the checkpoint in one transaction; on a failure, the
//! same batch gone through event by event to find the one at fault.

use cqrskit_core::Projector;
use sqlx::PgConnection;
use tracing::Instrument;

use super::apply::roll_back;
use super::holder::Guarded;
use super::read_ahead::Batch;
use super::{ProjectionRunner, pace};
use crate::error::{Error, db};
use crate::row::LogRow;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Applies one batch. Returns how many events it processed (applied, or
    /// parked by the failure policy); 0 when caught up.
    ///
    /// # Errors
    ///
    /// [`Error::NotLeaseholder`] without the lease;
    /// [`Error::Stopped`] when the failure policy stops at an event;
    /// store failures. A batch that takes longer than the runner's
    /// statement bound (large events on a busy machine) is not an error:
    /// the runner halves its batches and tries again (see `pace`).
    pub async fn step(&self) -> Result<usize, Error> {
        loop {
            match self.step_at_pace().await {
                Err(error)
                    if pace::took_too_long(&error) && self.state.pace.slow_down(&self.options) =>
                {
                    let (rows, bytes) = self.state.pace.limits(&self.options);
                    tracing::warn!(
                        projection = self.name(),
                        %error,
                        rows,
                        bytes,
                        "a batch took longer than the runner's bound; halving the batches"
                    );
                }
                Ok(processed) => {
                    if processed > 0 {
                        self.state.pace.went_through();
                    }
                    return Ok(processed);
                }
                other => return other,
            }
        }
    }

    /// [`step`](Self::step) at the batch size of the moment.
    async fn step_at_pace(&self) -> Result<usize, Error> {
        // The lease first: setting up needs it.
        self.renewed_lease().await?;
        self.set_up_once().await?;
        let Guarded {
            mut tx,
            held,
            locked,
        } = self.guarded().await?;
        self.reload_held(&mut tx).await?;
        let Batch { rows, events } = match self.take_prefetched(locked.checkpoint) {
            Some(batch) => batch,
            None => Batch {
                rows: self.read_batch(&mut tx, locked.checkpoint).await?,
                events: None,
            },
        };
        let Some(last) = rows.last().map(|row| row.event().position) else {
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        };
        let span = tracing::info_span!(
            "projection_batch",
            projection = self.name(),
            from = %locked.checkpoint,
            to = %last,
            events = rows.len()
        );
        async {
            // Whether the batch was applied. Any failure short of a lost lease
            // (the projector's, a session the server ended, an aborted
            // transaction) sends the batch down the one-event-at-a-time path
            // below, which finds the event at fault; the transaction is
            // rolled back at once, so its connection is free for the read.
            let write = async {
                if let Err(error) = self.apply_batch(&mut tx, &rows, events).await {
                    tracing::debug!(projection = self.name(), %error, "batch failed; applying it event by event to find the event at fault");
                    roll_back(tx).await;
                    return Ok(false);
                }
                match self.advance(&mut tx, locked.checkpoint, last, held).await {
                    Ok(()) => {}
                    Err(error @ Error::NotLeaseholder { .. }) => return Err(error),
                    Err(error) => {
                        tracing::debug!(projection = self.name(), %error, "batch could not be committed; applying it event by event");
                        roll_back(tx).await;
                        return Ok(false);
                    }
                }
                // A COMMIT whose answer is lost is found out below: the
                // checkpoint is then past the batch, and nothing is redone.
                Ok::<_, Error>(tx.commit().await.is_ok())
            };
            // The next batch is read on another connection while this one is
            // written and committed: the log after `last` does not depend on
            // this transaction, and the next step uses what was read only if
            // the checkpoint is then at `last`.
            let (applied, next) = tokio::join!(write, self.read_ahead(last));
            if applied? {
                tracing::debug!(projection = self.name(), owner = %self.owner, from = %locked.checkpoint, to = %last, events = rows.len(), "batch applied");
                self.keep_prefetched(next);
                self.report_applied(&rows);
                return Ok(rows.len());
            }
            // Nothing of this batch is kept. Go through it one event at a time
            // to find the one that fails; a slow batch may have used up half
            // the lease meanwhile.
            let Some(Guarded { mut tx, held, .. }) = self.guarded_at(locked.checkpoint).await?
            else {
                return Ok(0);
            };
            match self.apply_all(&mut tx, &rows).await {
                Ok(()) => {
                    self.advance(&mut tx, locked.checkpoint, last, held).await?;
                    match tx.commit().await {
                        Ok(()) => {
                            self.report_applied(&rows);
                            Ok(rows.len())
                        }
                        // Every event applied, and the server refused the
                        // COMMIT (a deferred constraint): one event per
                        // transaction from here finds the one at fault.
                        Err(sqlx::Error::Database(error)) => {
                            let reason = format!("the commit was refused: {error}");
                            self.retry_or_give_up(&rows[0], reason, locked.checkpoint)
                                .await?;
                            Ok(1)
                        }
                        Err(error) => Err(db(error)),
                    }
                }
                Err((failed, reason)) => {
                    roll_back(tx).await;
                    let applied = self
                        .apply_prefix(&rows[..failed], locked.checkpoint)
                        .await?;
                    if applied < failed {
                        return Ok(applied);
                    }
                    let before = failed
                        .checked_sub(1)
                        .map_or(locked.checkpoint, |index| rows[index].event().position);
                    self.retry_or_give_up(&rows[failed], reason, before).await?;
                    Ok(failed + 1)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Counts a committed batch and sets the lag to its last event's age.
    fn report_applied(&self, rows: &[LogRow]) {
        metrics::counter!(crate::telemetry::PROJECTION_EVENTS_APPLIED, "projection" => self.name().to_owned())
            .increment(rows.len() as u64);
        if let Some(last) = rows.last() {
            let age = (chrono::Utc::now() - last.event().recorded_at)
                .to_std()
                .unwrap_or_default();
            metrics::gauge!(crate::telemetry::PROJECTION_LAG, "projection" => self.name().to_owned())
                .set(age.as_secs_f64());
        }
    }
}
