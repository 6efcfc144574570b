//! Wrapping a store to change part of what it does, forwarding the rest.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    AppendResult, EventQueries, EventStore, LogFilter, ReplayRequest, ReplaySink, Snapshot,
    SnapshotStore,
};
use crate::{ExpectedVersion, NewEvent, Position, StoreError, StoredEvent, StreamId};

/// A store that wraps another and changes some of what it does: implement
/// [`inner`](Self::inner) and the methods you change; every other method
/// forwards to the inner store, and the type is an [`EventStore`].
///
/// An append with a snapshot goes through the layer's
/// [`append`](Self::append) and then saves the snapshot in the inner store's
/// [`SnapshotStore`], so a layer that changes appends changes those too.
///
/// Call a layer through [`EventStore`] (`Arc<dyn EventStore>`, or with only
/// `EventStore` imported): with both traits in scope, `layer.append(..)`
/// names two methods.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cqrskit_core::{
///     AppendResult, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StoreError,
///     StoreLayer, StreamId, async_trait,
/// };
///
/// /// Counts appends and changes nothing else.
/// struct Counted {
///     inner: InMemoryEventStore,
///     appends: AtomicUsize,
/// }
///
/// #[async_trait]
/// impl StoreLayer for Counted {
///     fn inner(&self) -> &dyn EventStore {
///         &self.inner
///     }
///
///     async fn append(
///         &self,
///         stream: &StreamId,
///         expected: ExpectedVersion,
///         events: Vec<NewEvent>,
///     ) -> Result<AppendResult, StoreError> {
///         self.appends.fetch_add(1, Ordering::Relaxed);
///         self.inner.append(stream, expected, events).await
///     }
/// }
///
/// let store: Arc<dyn EventStore> = Arc::new(Counted {
///     inner: InMemoryEventStore::new(),
///     appends: AtomicUsize::new(0),
/// });
/// # let _ = store;
/// ```
#[async_trait]
pub trait StoreLayer: Send + Sync {
    /// The wrapped store.
    fn inner(&self) -> &dyn EventStore;

    /// As [`EventStore::append`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::append`].
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner().append(stream, expected, events).await
    }

    /// As [`EventStore::read_stream`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::read_stream`].
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner().read_stream(stream, from, limit).await
    }

    /// As [`EventStore::read_log`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::read_log`].
    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner().read_log(after, filter, limit).await
    }

    /// As [`EventStore::event_by_id`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::event_by_id`].
    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.inner().event_by_id(event_id).await
    }

    /// As [`EventStore::replay`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::replay`].
    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        self.inner().replay(request, sink).await
    }

    /// As [`EventStore::stream_version`]; forwards by default.
    ///
    /// # Errors
    ///
    /// As [`EventStore::stream_version`].
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.inner().stream_version(stream).await
    }

    /// As [`EventStore::snapshots`]; the inner store's by default.
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        self.inner().snapshots()
    }

    /// As [`EventStore::queries`]; the inner store's by default.
    fn queries(&self) -> Option<&dyn EventQueries> {
        self.inner().queries()
    }
}

#[async_trait]
impl<L: StoreLayer> EventStore for L {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        StoreLayer::append(self, stream, expected, events).await
    }

    async fn append_with_snapshot(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Snapshot,
    ) -> Result<AppendResult, StoreError> {
        let appended = StoreLayer::append(self, stream, expected, events).await?;
        super::save_if_described(StoreLayer::snapshots(self), stream, &appended, snapshot).await;
        Ok(appended)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        StoreLayer::read_stream(self, stream, from, limit).await
    }

    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        StoreLayer::read_log(self, after, filter, limit).await
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        StoreLayer::event_by_id(self, event_id).await
    }

    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        StoreLayer::replay(self, request, sink).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        StoreLayer::stream_version(self, stream).await
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        StoreLayer::snapshots(self)
    }

    fn queries(&self) -> Option<&dyn EventQueries> {
        StoreLayer::queries(self)
    }
}
