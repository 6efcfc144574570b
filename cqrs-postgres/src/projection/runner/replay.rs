//! Dead letters tried again: each parked event applied in a transaction
//! of its own, in log order, a stream whose dead letter fails again held
//! back so that its events are never applied out of order.

use cqrskit_core::Projector;
use sqlx::PgConnection;

use super::ProjectionRunner;
use super::apply::roll_back;
use crate::error::{Error, db};
use crate::projection::dead_letter::DeadLetter;
use crate::row::LogRow;

/// The outcome of replaying parked events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Dead letters the projector now processed.
    pub resolved: usize,
    /// Dead letters that failed again (their error and attempts are updated).
    pub still_failing: usize,
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// The projection's parked events that are not resolved yet, oldest first.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letter_table()
            .list(self.name(), false)
            .await
            .map_err(db)
    }

    /// Tries every open dead letter again, each in its own transaction. The
    /// main checkpoint does not move: the projection had already gone past
    /// these events.
    ///
    /// # Errors
    ///
    /// Store failures; a projector failure only counts as `still_failing`.
    pub async fn replay_dead_letters(&self) -> Result<ReplayOutcome, Error> {
        let outcome = self.replay_each_dead_letter().await;
        self.report_dead_letters().await;
        outcome
    }

    /// Sets the dead-letter gauge to the open dead letters' count.
    pub(super) async fn report_dead_letters(&self) {
        if let Ok(open) = self.dead_letters().await {
            metrics::gauge!(crate::telemetry::PROJECTION_DEAD_LETTERS, "projection" => self.name().to_owned())
                .set(open.len() as f64);
        }
    }

    async fn replay_each_dead_letter(&self) -> Result<ReplayOutcome, Error> {
        let mut outcome = ReplayOutcome::default();
        // A stream whose dead letter failed again: its later ones wait, so
        // that its events are never applied out of order.
        let mut failed_streams = std::collections::HashSet::new();
        for parked in self.dead_letters().await? {
            if failed_streams.contains(&parked.stream) {
                outcome.still_failing += 1;
                continue;
            }
            let mut tx = self.begin().await?;
            // A rebuild holds this row from its reset to dropping the open
            // dead letters: a replay must not write between the two.
            self.row().lock(&mut tx).await.map_err(db)?;
            let Some(parked) = self
                .dead_letter_table()
                .lock_open(&mut tx, parked.id)
                .await
                .map_err(db)?
            else {
                continue;
            };
            // Read on the transaction's own connection: a runner works with
            // a pool of one.
            let event = self
                .store
                .reader()
                .event_by_id_on(&mut tx, parked.event_id)
                .await?;
            let result = match event {
                Some(event) => self.apply_one_now(&mut tx, &LogRow::Readable(event)).await,
                None => Err(format!("event {} is no longer stored", parked.event_id)),
            };
            match result {
                Ok(()) => {
                    self.dead_letter_table()
                        .record_replay(&mut tx, parked.id, None)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.resolved += 1;
                }
                Err(reason) => {
                    roll_back(tx).await;
                    failed_streams.insert(parked.stream.clone());
                    let mut tx = self.begin().await?;
                    self.dead_letter_table()
                        .record_replay(&mut tx, parked.id, Some(&reason))
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.still_failing += 1;
                }
            }
        }
        Ok(outcome)
    }
}
