//! Saved aggregate states, so that loading need not replay a whole stream.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::AppendResult;
use crate::{StoreError, StreamId};

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

/// Where a store keeps snapshots: one per stream, the newest.
///
/// Optional for a backend. A store that has one hands it out through
/// [`EventStore::snapshots`](super::EventStore::snapshots), and the
/// default [`replay`](super::EventStore::replay) and
/// [`append_with_snapshot`](super::EventStore::append_with_snapshot) use it.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
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
