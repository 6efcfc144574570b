//! Handing events to the projector so that every way it can fail becomes
//! the failure of one event, which the failure policy then handles: an error
//! it returns, a panic, a database error it swallowed (its transaction is
//! then aborted), or a session the server ended while it worked (a timeout).

use std::future::Future;
use std::sync::Arc;

use cqrskit_core::{EventEnvelope, Projector, StoredEvent, unwind};
use sqlx::{PgConnection, Postgres, Transaction};

use super::ProjectionRunner;
use crate::row::LogRow;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Applies one event, or parks it when its stream is held behind a
    /// parked event (see `held`); the error as text for the records.
    pub(super) async fn apply_one(
        &self,
        tx: &mut PgConnection,
        row: &LogRow,
    ) -> Result<(), String> {
        if self.state.held.holds(row) {
            return self.park_behind(tx, row).await;
        }
        self.apply_one_now(tx, row).await
    }

    /// Decodes and applies one event, then checks that the projector left
    /// its transaction usable; the error as text for the records.
    pub(super) async fn apply_one_now(
        &self,
        tx: &mut PgConnection,
        row: &LogRow,
    ) -> Result<(), String> {
        let event = readable(row)?;
        // Decoding runs the application's upcasters and Deserialize impls.
        let decoded = caught(async { event.decode_ref::<P::Event>() })
            .await?
            .map_err(|error| error.to_string())?;
        caught(self.projector.project(&decoded, tx))
            .await?
            .map_err(|error| error.to_string())?;
        self.still_usable(tx).await
    }

    /// Decodes every event (unless `decoded` already holds them) and hands
    /// them to the projector as one batch; those of held streams are parked
    /// instead (see `held`).
    pub(super) async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        rows: &[LogRow],
        decoded: Option<Arc<[EventEnvelope<P::Event>]>>,
    ) -> Result<(), String> {
        let decoded = if rows.iter().any(|row| self.state.held.holds(row)) {
            let mut free = Vec::with_capacity(rows.len());
            for row in rows {
                if self.state.held.holds(row) {
                    self.park_behind(tx, row).await?;
                } else {
                    free.push(row);
                }
            }
            decode_all::<P::Event>(free.into_iter()).await?
        } else {
            match decoded {
                Some(events) => events,
                None => decode_all::<P::Event>(rows.iter()).await?,
            }
        };
        if decoded.is_empty() {
            return Ok(());
        }
        caught(self.projector.project_batch(&decoded, tx))
            .await?
            .map_err(|error| error.to_string())?;
        self.still_usable(tx).await
    }

    /// Whether the transaction can still commit: a projector that swallowed
    /// a database error left it aborted, a server timeout may have ended the
    /// session while the projector worked, and a projector that sent its own
    /// `ROLLBACK` or `COMMIT` ended it (the row lock taken at its start gave
    /// it a transaction id; outside it, a statement has none). Each is that
    /// event's failure, not the next statement's.
    async fn still_usable(&self, tx: &mut PgConnection) -> Result<(), String> {
        // language=SQL
        let in_transaction: Result<bool, _> = self
            .store
            .database()
            .query_scalar("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
            .fetch_one(tx)
            .await;
        match in_transaction {
            Ok(true) => Ok(()),
            Ok(false) => Err(
                "the projector ended the runner's transaction (its own ROLLBACK or COMMIT); \
                 a projector must leave the transaction to the runner"
                    .to_owned(),
            ),
            Err(error) => Err(format!(
                "the projector left its transaction unusable: {error}"
            )),
        }
    }

    /// Applies every event; on a failure, the index of the failing event and why.
    pub(super) async fn apply_all(
        &self,
        tx: &mut PgConnection,
        rows: &[LogRow],
    ) -> Result<(), (usize, String)> {
        for (index, row) in rows.iter().enumerate() {
            self.apply_one(tx, row)
                .await
                .map_err(|reason| (index, reason))?;
        }
        Ok(())
    }
}

/// Decodes `rows` (running the application's upcasters and Deserialize
/// impls, whose panics become errors).
async fn decode_all<'r, E: cqrskit_core::DomainEvent>(
    rows: impl Iterator<Item = &'r LogRow>,
) -> Result<Arc<[EventEnvelope<E>]>, String> {
    caught(async {
        rows.map(|row| {
            readable(row)?
                .decode_ref::<E>()
                .map_err(|error| error.to_string())
        })
        .collect::<Result<Arc<[_]>, _>>()
    })
    .await?
}

fn readable(row: &LogRow) -> Result<&StoredEvent, String> {
    match row {
        LogRow::Readable(event) => Ok(event),
        LogRow::Unreadable { error, .. } => Err(format!("the stored row cannot be read: {error}")),
    }
}

/// Runs `future`, turning a panic in it into an error naming the panic.
async fn caught<F: Future>(future: F) -> Result<F::Output, String> {
    unwind::caught(future)
        .await
        .map_err(|panic| format!("the projector panicked: {panic}"))
}

/// Rolls back, when the session still allows it: a failure is being handled
/// already, and a session the server ended has nothing left to roll back.
pub(super) async fn roll_back(tx: Transaction<'static, Postgres>) {
    if let Err(error) = tx.rollback().await {
        tracing::debug!(%error, "rollback after a failure failed; the session is gone");
    }
}
