//! Reading the next batch while the current one is written and committed,
//! and handing it to the projector's `look_ahead` meanwhile.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use cqrskit_core::{EventEnvelope, Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::row::LogRow;

/// The batch after a committed one, read while that one was written.
pub(super) struct Prefetched<E> {
    /// The position the rows follow.
    after: Position,
    rows: Vec<LogRow>,
    /// The rows decoded, when every one of them decoded.
    events: Option<Arc<[EventEnvelope<E>]>>,
}

/// A batch to apply: its rows, and their events when already decoded.
pub(super) struct Batch<E> {
    pub(super) rows: Vec<LogRow>,
    pub(super) events: Option<Arc<[EventEnvelope<E>]>>,
}

/// How many batches a runner reads ahead of the one it applies: two keep
/// the reads going back to back while batches are applied (one would start
/// each read only when the batch before it starts being applied).
const DEPTH: usize = 2;

impl<E> Prefetched<E> {
    fn last(&self) -> Option<Position> {
        self.rows.last().map(|row| row.event().position)
    }
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Reads the batches after `after` (after those read ahead already) on
    /// a connection of its own, if the pool has one to spare right away
    /// (reading ahead must never make the step wait for a connection),
    /// decodes them, and hands each to the projector's `look_ahead` without
    /// waiting for that. Stops at the end of the log, at the first failure
    /// (the next step reads again) or [`DEPTH`] batches ahead.
    pub(super) async fn read_ahead(&self, after: Position) -> Vec<Prefetched<P::Event>> {
        // Behind a transaction pooler a session is a BEGIN round trip, which
        // the time limit below could cut in the middle.
        if self.store.database().pooled() {
            return Vec::new();
        }
        let (mut from, wanted) = {
            let queue = self.queue();
            match queue.back().and_then(Prefetched::last) {
                Some(last) => (last, DEPTH.saturating_sub(queue.len())),
                None => (after, DEPTH),
            }
        };
        if wanted == 0 {
            return Vec::new();
        }
        let pool = self.store.pool();
        let spare = pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections();
        if !spare {
            return Vec::new();
        }
        // On a task of its own, so that reading and decoding run beside the
        // batch being written instead of between its steps.
        let store = self.store.clone();
        let selection = self.selection.clone();
        let projector = self.projector.clone();
        let name = self.name().to_owned();
        let (size, bytes) = self.state.pace.limits(&self.options);
        let read = tokio::spawn(async move {
            let mut batches = Vec::new();
            let session = store.database().session();
            let Ok(Ok(mut session)) =
                tokio::time::timeout(Duration::from_millis(100), session).await
            else {
                return batches;
            };
            while batches.len() < wanted {
                let rows = match store
                    .reader()
                    .read_log_rows_on(&mut session, from, selection.log_read(size, bytes))
                    .await
                {
                    Ok(rows) if !rows.is_empty() => rows,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::debug!(projection = name, %error, "reading ahead failed; the next step reads again");
                        break;
                    }
                };
                // A row that does not decode is left to the step, which
                // records why; so is a panicking upcaster (this task then
                // ends, and the step reads again).
                let events: Option<Arc<[EventEnvelope<P::Event>]>> = rows
                    .iter()
                    .map(|row| match row {
                        LogRow::Readable(event) => event.decode_ref::<P::Event>().ok(),
                        LogRow::Unreadable { .. } => None,
                    })
                    .collect();
                if let Some(events) = events.clone() {
                    let projector = projector.clone();
                    tokio::spawn(async move { projector.look_ahead(from, &events).await });
                }
                let batch = Prefetched {
                    after: from,
                    rows,
                    events,
                };
                from = batch.last().unwrap_or(from);
                batches.push(batch);
            }
            // Only read: behind a pooler, ending its transaction cannot fail
            // in a way that matters.
            let _ = session.finish().await;
            batches
        });
        read.await.unwrap_or_default()
    }

    /// The batch read ahead that follows `checkpoint`; what was read ahead
    /// of another checkpoint is dropped.
    pub(super) fn take_prefetched(&self, checkpoint: Position) -> Option<Batch<P::Event>> {
        let mut queue = self.queue();
        match queue.pop_front() {
            Some(prefetched) if prefetched.after == checkpoint => Some(Batch {
                rows: prefetched.rows,
                events: prefetched.events,
            }),
            _ => {
                queue.clear();
                None
            }
        }
    }

    /// Keeps batches read ahead, if they follow those kept already.
    pub(super) fn keep_prefetched(&self, batches: Vec<Prefetched<P::Event>>) {
        let mut queue = self.queue();
        for batch in batches {
            let follows = match queue.back() {
                Some(back) => back.last() == Some(batch.after),
                None => true,
            };
            if !follows {
                return;
            }
            queue.push_back(batch);
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Prefetched<P::Event>>> {
        self.state
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
