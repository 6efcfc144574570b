//! Inline projections: read models updated in the same transaction as the
//! append, for those that must never lag behind the write.

use std::sync::Arc;

use async_trait::async_trait;
use cqrskit_core::{
    AppendResult, DomainEvent, EventEnvelope, EventStore, ExpectedVersion, NewEvent,
    ProjectionError, Projector, StoreError, StoreLayer, StreamId,
};
use sqlx::PgConnection;

use crate::PostgresEventStore;
use crate::error::store_error;

/// A projector run inside the append's transaction.
type InlineProjector<E> = Arc<dyn Projector<PgConnection, Event = E>>;

/// A [`PostgresEventStore`] that also runs projectors inside each append's
/// transaction: the read model and the events commit together, or neither
/// does (a failing projector fails the append with
/// [`StoreError::Projection`]).
///
/// It applies to the streams of one aggregate type, whose events are `E`;
/// appends to other streams pass straight through. It is a [`StoreLayer`]:
/// everything but appends goes to the wrapped store, and its
/// [`snapshots`](EventStore::snapshots) and [`queries`](EventStore::queries)
/// are the wrapped store's. Inline projections make every append slower and
/// couple the write to the read model's health: use them only for read models
/// that must be consistent with the write (a uniqueness index, say), and the
/// [`ProjectionRunner`](crate::ProjectionRunner) for the rest.
pub struct InlineProjections<E> {
    store: PostgresEventStore,
    aggregate_type: String,
    projectors: Vec<InlineProjector<E>>,
}

impl<E: DomainEvent> InlineProjections<E> {
    /// Wraps `store`, projecting the streams of `aggregate_type`
    /// ([`Aggregate::TYPE`](cqrskit_core::Aggregate::TYPE)).
    pub fn new(store: PostgresEventStore, aggregate_type: impl Into<String>) -> Self {
        Self {
            store,
            aggregate_type: aggregate_type.into(),
            projectors: Vec::new(),
        }
    }

    /// Adds a projector, run after the ones added before it.
    pub fn with_projector(mut self, projector: InlineProjector<E>) -> Self {
        self.projectors.push(projector);
        self
    }

    /// The wrapped store.
    pub fn store(&self) -> &PostgresEventStore {
        &self.store
    }

    async fn project(
        &self,
        tx: &mut PgConnection,
        envelopes: &[EventEnvelope<E>],
    ) -> Result<(), StoreError> {
        for projector in &self.projectors {
            let wanted = projector.event_types();
            for envelope in envelopes
                .iter()
                .filter(|e| wanted.contains(&e.event_type.as_str()))
            {
                projector
                    .project(envelope, tx)
                    .await
                    .map_err(|source| StoreError::Projection {
                        source: Box::new(ProjectionError::new(projector.name(), envelope, source)),
                        checkpoint: None,
                    })?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<E: DomainEvent> StoreLayer for InlineProjections<E> {
    fn inner(&self) -> &dyn EventStore {
        &self.store
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if stream.aggregate_type != self.aggregate_type || self.projectors.is_empty() {
            return self.store.append(stream, expected, events).await;
        }
        // Decode first: an event the projectors cannot read is refused before
        // anything is written.
        let mut decoded = Vec::with_capacity(events.len());
        for event in &events {
            let payload = E::decode(&event.event_type, event.event_version, event.payload.get())
                .map_err(|source| cqrskit_core::DecodeError {
                    stream: stream.clone(),
                    version: 0,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version,
                    source: Box::new(source),
                })?;
            decoded.push((
                event.event_id,
                event.event_type.clone(),
                event.event_version,
                event.metadata.clone(),
                payload,
            ));
        }
        let mut tx = self.store.pool().begin().await.map_err(store_error)?;
        let appended = self
            .store
            .append_in(&mut tx, stream, expected, events)
            .await?;
        if !appended.already_stored {
            let envelopes: Vec<EventEnvelope<E>> = decoded
                .into_iter()
                .zip(&appended.events)
                .map(
                    |((event_id, event_type, event_version, metadata, payload), committed)| {
                        EventEnvelope {
                            event_id,
                            stream: stream.clone(),
                            version: committed.version,
                            position: committed.position,
                            event_type,
                            event_version,
                            payload,
                            metadata,
                            recorded_at: committed.recorded_at,
                        }
                    },
                )
                .collect();
            self.project(&mut tx, &envelopes).await?;
        }
        // A connection lost during COMMIT leaves the outcome unknown.
        tx.commit().await.map_err(crate::error::sent_write_error)?;
        if !appended.events.is_empty() {
            self.store.notify_appended();
        }
        Ok(appended)
    }
}
