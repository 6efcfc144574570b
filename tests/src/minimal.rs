//! A store that implements only what [`EventStore`] requires, so that the
//! conformance suite checks the trait's defaults (replay, appends with a
//! snapshot, the stream's version) as a new backend would rely on them.

use cqrskit::{
    AppendResult, EventQueries, EventStore, ExpectedVersion, InMemoryEventStore, LogFilter,
    NewEvent, Position, SnapshotStore, StoreError, StoredEvent, StreamId, async_trait,
};
use uuid::Uuid;

/// The in-memory store seen through the four required methods only, with
/// its snapshots and queries as capabilities (or, made
/// [`bare`](Self::bare), without them).
pub struct MinimalStore {
    inner: InMemoryEventStore,
    capabilities: bool,
}

impl MinimalStore {
    /// An empty store that keeps snapshots and answers queries.
    pub fn new() -> Self {
        Self {
            inner: InMemoryEventStore::new(),
            capabilities: true,
        }
    }

    /// An empty store with neither snapshots nor queries: what the trait's
    /// defaults give a backend that implements nothing else.
    pub fn bare() -> Self {
        Self {
            inner: InMemoryEventStore::new(),
            capabilities: false,
        }
    }
}

impl Default for MinimalStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventStore for MinimalStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_stream(stream, from, limit).await
    }

    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_log(after, filter, limit).await
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.event_by_id(event_id).await
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        self.capabilities
            .then_some(&self.inner as &dyn SnapshotStore)
    }

    fn queries(&self) -> Option<&dyn EventQueries> {
        self.capabilities
            .then_some(&self.inner as &dyn EventQueries)
    }
}
