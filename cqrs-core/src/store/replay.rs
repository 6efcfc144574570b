//! Replaying a stream into a sink: what loading an aggregate reads, and
//! the way any store can do it from the required methods alone.

use super::{EventStore, Snapshot};
use crate::{StoreError, StreamId};

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

/// How many events the default replay reads per round trip.
const REPLAY_BATCH: usize = 5000;

/// The default [`EventStore::replay`]: the snapshot from the store's
/// [`SnapshotStore`](super::SnapshotStore), if it has one, then batches of
/// [`read_stream`](EventStore::read_stream).
pub(super) async fn by_reading<S: EventStore + ?Sized>(
    store: &S,
    request: ReplayRequest<'_>,
    sink: &mut dyn ReplaySink,
) -> Result<(), StoreError> {
    let mut next = 1;
    if let (Some(schema), Some(snapshots)) = (request.snapshot_schema, store.snapshots()) {
        if let Some(snapshot) = snapshots.load_snapshot(request.stream).await? {
            // A snapshot ahead of its stream is ignored: trusting it would
            // make every append conflict with the version it claims.
            let usable = snapshot.schema_version == schema
                && request.upto.is_none_or(|upto| snapshot.version <= upto)
                && snapshot.version <= store.stream_version(request.stream).await?;
            if usable && sink.snapshot(&snapshot) {
                next = snapshot.version + 1;
            }
        }
    }
    loop {
        let wanted = match request.upto {
            Some(upto) if upto < next => return Ok(()),
            Some(upto) => {
                usize::try_from(upto - next + 1).map_or(REPLAY_BATCH, |left| left.min(REPLAY_BATCH))
            }
            None => REPLAY_BATCH,
        };
        let batch = store.read_stream(request.stream, next, wanted).await?;
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

/// The default [`EventStore::stream_version`]: versions have no holes, so
/// the last one is found by asking whether a version exists, doubling and
/// then halving (about 2·log₂(n) one-event reads).
pub(super) async fn probe_version<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
) -> Result<u64, StoreError> {
    let exists = async |version: u64| -> Result<bool, StoreError> {
        Ok(!store.read_stream(stream, version, 1).await?.is_empty())
    };
    if !exists(1).await? {
        return Ok(0);
    }
    // `known` exists; `beyond` does not (or is past every possible version).
    let mut known = 1;
    let mut beyond = 2;
    while beyond < u64::MAX && exists(beyond).await? {
        known = beyond;
        beyond = beyond.saturating_mul(2);
    }
    while beyond - known > 1 {
        let middle = known + (beyond - known) / 2;
        if exists(middle).await? {
            known = middle;
        } else {
            beyond = middle;
        }
    }
    Ok(known)
}
