//! The event store contract, over serialized events.
//!
//! Every store (in-memory, PostgreSQL) gives the same guarantees, checked by
//! one conformance suite: appends are atomic and guarded by the expected
//! version; versions in a stream have no holes; the global log is read in
//! [`Position`] order and a reader tailing it never skips an event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{ExpectedVersion, NewEvent, Position, StoreError, StoredEvent, StreamId};

mod filter;
mod layer;
mod queries;
mod replay;
mod snapshot;

pub use filter::LogFilter;
pub use layer::StoreLayer;
pub use queries::EventQueries;
pub use replay::{ReplayEvent, ReplayRequest, ReplaySink};
pub use snapshot::{Snapshot, SnapshotStore};

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

/// An event store: streams of serialized events and one global log.
///
/// A backend implements four methods: [`append`](Self::append),
/// [`read_stream`](Self::read_stream), [`read_log`](Self::read_log) and
/// [`event_by_id`](Self::event_by_id) (which makes re-executing a command
/// idempotent). The others have defaults built on those four, which a
/// backend overrides to do the same work in fewer round trips. Snapshots
/// ([`SnapshotStore`]) and lookups for tools ([`EventQueries`]) are
/// capabilities a store may hand out through [`snapshots`](Self::snapshots)
/// and [`queries`](Self::queries). A store that wraps another implements
/// [`StoreLayer`] instead and forwards only what it changes.
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

    /// Appends like [`append`](Self::append) and, when that stores the
    /// events, saves `snapshot`, the aggregate's state at the version the
    /// batch ends on, with them. A snapshot at any other version, or of
    /// another stream, is not saved. A snapshot is an optimisation: failing
    /// to save it never fails the append.
    ///
    /// The default appends, then saves the snapshot in the store's
    /// [`snapshots`](Self::snapshots) (if any) and logs a failure to; stores
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
        let appended = self.append(stream, expected, events).await?;
        save_if_described(self.snapshots(), stream, &appended, snapshot).await;
        Ok(appended)
    }

    /// Streams what rebuilding an aggregate needs into `sink`: the stream's
    /// snapshot when `request` asks for one and it is usable, then every
    /// event after it up to `request.upto`, in version order.
    ///
    /// The default loads the snapshot from [`snapshots`](Self::snapshots),
    /// then reads whole events in batches; stores override it to do it in
    /// one round trip, decoding rows as they arrive.
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
        replay::by_reading(self, request, sink).await
    }

    /// The stream's last version (0 when it holds no event).
    ///
    /// The default finds it with about 2·log₂(version) one-event reads;
    /// stores override it with one query.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        replay::probe_version(self, stream).await
    }

    /// Where this store keeps snapshots, if it does. `None` by default:
    /// aggregates then load by replaying their streams.
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        None
    }

    /// This store's lookups for tools, if it answers them. `None` by default.
    fn queries(&self) -> Option<&dyn EventQueries> {
        None
    }
}

/// Saves `snapshot` when it describes the batch just appended; a failure
/// to is logged, never returned (a snapshot is an optimisation).
async fn save_if_described(
    snapshots: Option<&dyn SnapshotStore>,
    stream: &StreamId,
    appended: &AppendResult,
    snapshot: Snapshot,
) {
    let Some(snapshots) = snapshots else {
        return;
    };
    if snapshot.describes(stream, appended) {
        let version = snapshot.version;
        if let Err(error) = snapshots.save_snapshot(snapshot).await {
            tracing::warn!(%stream, version, %error, "cannot save snapshot");
        }
    }
}
