//! An in-memory event store with the same semantics as the PostgreSQL one.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    AppendResult, Committed, Conflict, EventEnvelope, EventQueries, EventStore, ExpectedVersion,
    LogFilter, NewEvent, Position, Snapshot, SnapshotStore, StoreError, StoredEvent, StreamId,
};

/// An event store kept in memory: for tests, demos and prototypes.
///
/// It honours the whole [`EventStore`] contract (expected versions, idempotent
/// re-appends, gap-free versions, a global log in position order, filters,
/// snapshots) and is safe to share between tasks: every append happens under
/// one lock, so positions are handed out in commit order and readers can
/// never see a gap.
#[derive(Debug, Default)]
pub struct InMemoryEventStore {
    inner: RwLock<Log>,
}

#[derive(Debug, Default)]
struct Log {
    /// Every event, in position order.
    events: Vec<StoredEvent>,
    /// Indexes into `events` of each stream's events, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// Index into `events` of each event id.
    ids: HashMap<Uuid, usize>,
    snapshots: HashMap<StreamId, Snapshot>,
    last_transaction: u64,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events the store holds across all streams.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// Whether the store holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written: an
        // append validates everything before its first mutation.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Log> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Log {
    fn stream_version(&self, stream: &StreamId) -> u64 {
        self.streams
            .get(stream)
            .map_or(0, |indexes| indexes.len() as u64)
    }

    /// The retry of an earlier append, if `events` is one: every event already
    /// stored, in this stream, in this order, with the same content.
    fn earlier_append(
        &self,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let Some(first) = events.first() else {
            return Ok(None);
        };
        let Some(&first_index) = self.ids.get(&first.event_id) else {
            // Still check the others, so a batch mixing old and new ids is refused.
            return match events
                .iter()
                .find(|event| self.ids.contains_key(&event.event_id))
            {
                Some(reused) => Err(StoreError::EventIdReused {
                    event_id: reused.event_id,
                    stream: stream.clone(),
                }),
                None => Ok(None),
            };
        };
        let mut committed = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            let stored = self
                .events
                .get(first_index + offset)
                .filter(|stored| stored.stream == *stream && event.same_as(stored));
            match stored {
                Some(stored) => committed.push(committed_of(stored)),
                None => {
                    return Err(StoreError::EventIdReused {
                        event_id: event.event_id,
                        stream: stream.clone(),
                    });
                }
            }
        }
        Ok(Some(AppendResult {
            stream_version: self.stream_version(stream),
            events: committed,
            already_stored: true,
        }))
    }
}

fn committed_of(event: &StoredEvent) -> Committed {
    Committed {
        event_id: event.event_id,
        version: event.version,
        position: event.position,
        recorded_at: event.recorded_at,
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        crate::limits::check_append(stream, &events)?;
        let mut log = self.write();
        if let Some(earlier) = log.earlier_append(stream, &events)? {
            return Ok(earlier);
        }
        let actual = log.stream_version(stream);
        if !expected.accepts(actual) {
            return Err(Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }
            .into());
        }
        if let Some(duplicate) = first_duplicate_id(&events) {
            return Err(StoreError::EventIdReused {
                event_id: duplicate,
                stream: stream.clone(),
            });
        }
        if events.is_empty() {
            return Ok(AppendResult {
                stream_version: actual,
                events: Vec::new(),
                already_stored: false,
            });
        }

        log.last_transaction += 1;
        let transaction = log.last_transaction;
        let recorded_at = Utc::now();
        let mut committed = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let index = log.events.len();
            let stored = EventEnvelope {
                event_id: event.event_id,
                stream: stream.clone(),
                version: actual + offset as u64 + 1,
                position: Position::new(transaction, index as u64 + 1),
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at,
            };
            committed.push(committed_of(&stored));
            log.ids.insert(stored.event_id, index);
            log.streams.entry(stream.clone()).or_default().push(index);
            log.events.push(stored);
        }
        Ok(AppendResult {
            stream_version: actual + committed.len() as u64,
            events: committed,
            already_stored: false,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let log = self.read();
        let Some(indexes) = log.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(indexes
            .iter()
            .skip(skip)
            .take(limit)
            .map(|&index| log.events[index].clone())
            .collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.read().stream_version(stream))
    }

    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let log = self.read();
        let start = log.events.partition_point(|event| event.position <= after);
        Ok(log.events[start..]
            .iter()
            .filter(|event| filter.matches(event))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let log = self.read();
        Ok(log
            .ids
            .get(&event_id)
            .map(|&index| log.events[index].clone()))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    fn queries(&self) -> Option<&dyn EventQueries> {
        Some(self)
    }
}

#[async_trait]
impl EventQueries for InMemoryEventStore {
    async fn events_by_correlation(
        &self,
        correlation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .read()
            .events
            .iter()
            .filter(|event| event.metadata.correlation_id == Some(correlation_id))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn events_in_time_range(
        &self,
        filter: &LogFilter,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let log = self.read();
        let mut events: Vec<&StoredEvent> = log
            .events
            .iter()
            .filter(|event| event.recorded_at >= from && event.recorded_at < until)
            .filter(|event| filter.matches(event))
            .collect();
        events.sort_by_key(|event| (event.recorded_at, event.position));
        Ok(events.into_iter().take(limit).cloned().collect())
    }
}

#[async_trait]
impl SnapshotStore for InMemoryEventStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.read().snapshots.get(stream).cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut log = self.write();
        let newer = log
            .snapshots
            .get(&snapshot.stream)
            .is_none_or(|current| current.version <= snapshot.version);
        if newer {
            log.snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Ok(())
    }
}

fn first_duplicate_id(events: &[NewEvent]) -> Option<Uuid> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .iter()
        .find(|event| !seen.insert(event.event_id))
        .map(|event| event.event_id)
}
