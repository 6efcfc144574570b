//! Reading the next batch while the current one is written and committed.

use std::sync::PoisonError;
use std::time::Duration;

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::row::LogRow;

/// The batch after a committed one, read while that one was written.
pub(super) struct Prefetched {
    /// The position the rows follow.
    after: Position,
    rows: Vec<LogRow>,
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Reads the batch after `after` on a connection of its own, if the
    /// pool has one to spare right away: reading ahead must never make the
    /// step wait for a connection. `None` when it did not read or read
    /// nothing (the next step reads again).
    pub(super) async fn read_ahead(&self, after: Position) -> Option<Vec<LogRow>> {
        // Behind a transaction pooler a session is a BEGIN round trip, which
        // the time limit below could cut in the middle.
        if self.store.database().pooled() {
            return None;
        }
        let pool = self.store.pool();
        let spare = pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections();
        if !spare {
            return None;
        }
        let session = self.store.database().session();
        let mut session = match tokio::time::timeout(Duration::from_millis(100), session).await {
            Ok(Ok(session)) => session,
            _ => return None,
        };
        let read = self.read_batch(&mut session, after).await;
        // Only read: behind a pooler, ending its transaction cannot fail in a
        // way that matters.
        let _ = session.finish().await;
        match read {
            Ok(rows) if !rows.is_empty() => Some(rows),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(projection = self.name(), %error, "reading ahead failed; the next step reads again");
                None
            }
        }
    }

    /// The batch read ahead, if it follows `checkpoint`.
    pub(super) fn take_prefetched(&self, checkpoint: Position) -> Option<Vec<LogRow>> {
        let mut slot = self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            Some(prefetched) if prefetched.after == checkpoint => Some(prefetched.rows),
            _ => None,
        }
    }

    pub(super) fn keep_prefetched(&self, after: Position, rows: Vec<LogRow>) {
        *self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Prefetched { after, rows });
    }
}
