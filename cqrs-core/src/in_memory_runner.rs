//! A projector together with its checkpoint, for consumers of the global log
//! that run in-process: read models over the in-memory store, process
//! managers in tests and demos.
//!
//! Stores with a runner of their own (the PostgreSQL `ProjectionRunner`) keep
//! the checkpoint in the database instead; this one keeps it in memory.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::{EventStore, Position, Projector, StoreError, catch_up};

/// Feeds a projector every new event of the log, remembering where it
/// stopped in memory: the in-process counterpart of a store's runner.
pub struct InMemoryRunner<P: ?Sized> {
    store: Arc<dyn EventStore>,
    projector: Arc<P>,
    checkpoint: Mutex<Position>,
    batch_size: usize,
}

impl<P: Projector + ?Sized> InMemoryRunner<P> {
    /// A runner of `projector` over `store`, from the start of the log.
    pub fn new(store: Arc<dyn EventStore>, projector: Arc<P>) -> Self {
        Self {
            store,
            projector,
            checkpoint: Mutex::new(Position::START),
            batch_size: 500,
        }
    }

    /// Starts from `checkpoint` instead (one saved earlier).
    pub fn from(self, checkpoint: Position) -> Self {
        Self {
            checkpoint: Mutex::new(checkpoint),
            ..self
        }
    }

    /// The position of the last event processed.
    pub async fn checkpoint(&self) -> Position {
        *self.checkpoint.lock().await
    }

    /// The projector.
    pub fn projector(&self) -> &Arc<P> {
        &self.projector
    }

    /// Rebuilds the read model: runs the projector's
    /// [`reset`](Projector::reset) and puts the checkpoint back to the start,
    /// so the next [`poll`](Self::poll) replays the whole log. Waits for a
    /// poll under way to finish first.
    ///
    /// # Errors
    ///
    /// The reset's error ([`StoreError::Backend`]); the checkpoint then stays.
    pub async fn rebuild(&self) -> Result<(), StoreError> {
        let mut checkpoint = self.checkpoint.lock().await;
        self.projector
            .reset(&mut ())
            .await
            .map_err(StoreError::Backend)?;
        *checkpoint = Position::START;
        Ok(())
    }

    /// Processes every event appended since the last call. Returns the new
    /// checkpoint. Calls do not overlap: a second caller waits its turn.
    ///
    /// # Errors
    ///
    /// A store or decode failure, or the projector's error; the checkpoint
    /// then stays at the last event processed, so the next call retries the
    /// failing event.
    pub async fn poll(&self) -> Result<Position, StoreError> {
        let mut checkpoint = self.checkpoint.lock().await;
        let result = catch_up(&*self.store, &*self.projector, *checkpoint, self.batch_size).await;
        match result {
            Ok(position) => {
                *checkpoint = position;
                Ok(position)
            }
            Err(StoreError::Projection {
                source,
                checkpoint: Some(reached),
            }) => {
                *checkpoint = reached;
                Err(StoreError::Projection {
                    source,
                    checkpoint: Some(reached),
                })
            }
            Err(other) => Err(other),
        }
    }
}
