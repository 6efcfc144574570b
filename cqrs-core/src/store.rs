//! The event store contract, over serialized events.
//!
//! Every store (in-memory, PostgreSQL) gives the same guarantees, checked by
//! one conformance suite: appends are atomic and guarded by the expected
//! version; versions in a stream have no holes; the global log is read in
//! [`Position`] order and a reader tailing it never skips an event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{ExpectedVersion, NewEvent, Position, StoreError, StoredEvent, StreamId};

/// Where one appended event landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The event's id.
    pub event_id: Uuid,
    /// Its version in the stream.
    pub version: u64,
    /// Its place in the global log.
    pub position: Position,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// The result of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's last version after the append.
    pub stream_version: u64,
    /// Where each appended event landed, in the order given.
    pub events: Vec<Committed>,
    /// True when every event was already stored, exactly as given, by an
    /// earlier append (a retried request): nothing new was written and
    /// `events` reports the original places.
    pub already_stored: bool,
}

/// One stored event as a replay reads it: only what rebuilding an aggregate
/// needs, borrowed from the store's read buffer so that no payload is copied
/// on its way to the decoder.
#[derive(Clone, Copy, Debug)]
pub struct ReplayEvent<'a> {
    /// Its version in the stream.
    pub version: u64,
    /// The stored type name.
    pub event_type: &'a str,
    /// The payload's schema version.
    pub event_version: u32,
    /// The serialized payload (JSON text).
    pub payload: &'a str,
}

/// Which part of a stream a [replay](EventStore::replay) reads.
#[derive(Clone, Copy, Debug)]
pub struct ReplayRequest<'a> {
    /// The stream.
    pub stream: &'a StreamId,
    /// The last version wanted; `None` reads to the end of the stream.
    pub upto: Option<u64>,
    /// Start from the stream's snapshot when it has this schema version and
    /// is not past `upto`; `None` replays from version 1.
    pub snapshot_schema: Option<u32>,
}

/// Receives a replayed stream: the snapshot first, when there is a usable
/// one, then the events after it in version order.
pub trait ReplaySink: Send {
    /// Offered the stream's snapshot. Returns whether it was taken: when not
    /// (its state no longer deserializes, say), the store replays the stream
    /// from version 1 instead.
    fn snapshot(&mut self, snapshot: &Snapshot) -> bool;

    /// One event, in version order.
    ///
    /// # Errors
    ///
    /// Whatever should stop the replay (an event that does not decode); the
    /// store stops reading and returns it.
    fn event(&mut self, event: ReplayEvent<'_>) -> Result<(), StoreError>;
}

/// How many events the default [`EventStore::replay`] reads per round trip.
const REPLAY_BATCH: usize = 5000;

/// Which events a reader of the global log wants. Empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only events with one of these stored type names.
    pub event_types: Vec<String>,
    /// Only events of aggregates of these types.
    pub aggregate_types: Vec<String>,
}

impl LogFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events with one of these stored type names.
    pub fn event_types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            event_types: types.into_iter().map(Into::into).collect(),
            aggregate_types: Vec::new(),
        }
    }

    /// Also restricts to aggregates of these types.
    pub fn and_aggregate_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.aggregate_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an event passes the filter.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && (self.aggregate_types.is_empty()
                || self.aggregate_types.contains(&event.stream.aggregate_type))
    }
}

/// A saved aggregate state, so that loading need not replay the whole stream.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: u64,
    /// The state's schema version ([`Aggregate::SNAPSHOT_VERSION`](crate::Aggregate::SNAPSHOT_VERSION)):
    /// a snapshot of another schema version is ignored and the stream replayed.
    pub schema_version: u32,
    /// The serialized state.
    pub state: Box<RawValue>,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

impl Snapshot {
    /// Whether this is the state `appended` left `stream` in: of that
    /// stream, at the version its newly stored batch ends on (a batch found
    /// already stored describes no new state).
    pub fn describes(&self, stream: &StreamId, appended: &AppendResult) -> bool {
        let ends_at = appended.events.last().map(|event| event.version);
        self.stream == *stream && !appended.already_stored && ends_at == Some(self.version)
    }
}

/// An event store: streams of serialized events, one global log, snapshots.
///
/// Object safe, so an application can hold `Arc<dyn EventStore>` and choose the
/// store at start-up.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` atomically, if the stream is at `expected`.
    ///
    /// Versions follow the stream's last version with no holes. If the first
    /// event's id is already stored, the append is a retry: it succeeds with
    /// `already_stored` when the whole batch matches what is stored, and fails
    /// with [`StoreError::EventIdReused`] otherwise.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the stream is not at `expected` (nothing is
    /// written); [`StoreError::EventIdReused`]; back-end failures.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends like [`append`](Self::append) and, when that stores the
    /// events, saves `snapshot`, the aggregate's state at the version the
    /// batch ends on, with them. A snapshot at any other version, or of
    /// another stream, is not saved. A snapshot is an optimisation: failing to save it never fails
    /// the append.
    ///
    /// The default appends, then saves the snapshot with
    /// [`save_snapshot`](Self::save_snapshot) and logs a failure to; stores
    /// override it to save both in one statement and one commit.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    async fn append_with_snapshot(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Snapshot,
    ) -> Result<AppendResult, StoreError> {
        let result = self.append(stream, expected, events).await?;
        if snapshot.describes(stream, &result) {
            let version = snapshot.version;
            if let Err(error) = self.save_snapshot(snapshot).await {
                tracing::warn!(%stream, version, %error, "cannot save snapshot");
            }
        }
        Ok(result)
    }

    /// Reads up to `limit` events of `stream`, starting at version `from`
    /// (inclusive), in version order. Read long streams in batches.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Streams what rebuilding an aggregate needs into `sink`: the stream's
    /// snapshot when `request` asks for one and it is usable, then every
    /// event after it up to `request.upto`, in version order.
    ///
    /// The default loads the snapshot, then reads whole events in batches;
    /// stores override it to do it in one round trip, decoding rows as they
    /// arrive.
    ///
    /// # Errors
    ///
    /// Back-end failures, a stored row that cannot be read, or the first
    /// error `sink` returns.
    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        let mut next = 1;
        if let Some(schema) = request.snapshot_schema {
            if let Some(snapshot) = self.load_snapshot(request.stream).await? {
                // A snapshot ahead of its stream is ignored: trusting it
                // would make every append conflict with the version it claims.
                let usable = snapshot.schema_version == schema
                    && request.upto.is_none_or(|upto| snapshot.version <= upto)
                    && snapshot.version <= self.stream_version(request.stream).await?;
                if usable && sink.snapshot(&snapshot) {
                    next = snapshot.version + 1;
                }
            }
        }
        loop {
            let wanted = match request.upto {
                Some(upto) if upto < next => return Ok(()),
                Some(upto) => usize::try_from(upto - next + 1)
                    .map_or(REPLAY_BATCH, |left| left.min(REPLAY_BATCH)),
                None => REPLAY_BATCH,
            };
            let batch = self.read_stream(request.stream, next, wanted).await?;
            for event in &batch {
                sink.event(ReplayEvent {
                    version: event.version,
                    event_type: &event.event_type,
                    event_version: event.event_version,
                    payload: event.payload.get(),
                })?;
            }
            match batch.last() {
                Some(last) if batch.len() == wanted => next = last.version + 1,
                _ => return Ok(()),
            }
        }
    }

    /// The stream's last version (0 when it holds no event).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Reads up to `limit` events of the global log after `after`, in position
    /// order, keeping only those `filter` lets through.
    ///
    /// Gap-safe: when a batch ends at position `p`, no event that commits later
    /// will ever appear at a position `<= p`. A reader that remembers the last
    /// position it processed and passes it back here reads every event exactly
    /// once, however its reads interleave with concurrent writers.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The event with this id, if stored.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Up to `limit` events of one business transaction (every event whose
    /// metadata carries `correlation_id`), in log order.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn events_by_correlation(
        &self,
        correlation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events recorded at or after `from` and before `until`
    /// that `filter` lets through, ordered by recording time, then log order.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn events_in_time_range(
        &self,
        filter: &LogFilter,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The latest snapshot of `stream`, if any.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// Saves a snapshot, replacing an older one of the same stream. A snapshot
    /// older than the one stored is ignored, so racing writers cannot move it back.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;
}
