//! Loading an aggregate: now, from every event, at a version, at a time.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{CommandPipeline, Loaded};
use crate::{
    Aggregate, DomainEvent, EventStore, ReplayEvent, ReplayRequest, ReplaySink, Snapshot,
    StoreError, StreamId,
};

impl<A: Aggregate> CommandPipeline<A> {
    /// The aggregate's current state.
    ///
    /// # Errors
    ///
    /// A store failure, or a stored event that cannot be decoded.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, StoreError> {
        load_stream::<A>(&*self.store, &Self::stream_id(id), None).await
    }

    /// The aggregate's state rebuilt from every stored event, ignoring its
    /// snapshot: to check a snapshot against the events, or after the
    /// state's shape changed without a new `SNAPSHOT_VERSION`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn load_from_events(&self, id: &str) -> Result<Loaded<A>, StoreError> {
        let stream = Self::stream_id(id);
        let mut rebuild = Rebuild {
            stream: &stream,
            upto: None,
            loaded: Loaded {
                state: A::default(),
                version: 0,
            },
        };
        let request = ReplayRequest {
            stream: &stream,
            upto: None,
            snapshot_schema: None,
        };
        self.store.replay(request, &mut rebuild).await?;
        Ok(rebuild.loaded)
    }

    /// The aggregate's state as it was right after version `version` (time
    /// travel). Version 0 is the state before any event.
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionNotFound`] when the stream has not reached
    /// `version`; otherwise as [`load`](Self::load).
    pub async fn load_at(&self, id: &str, version: u64) -> Result<Loaded<A>, StoreError> {
        let stream = Self::stream_id(id);
        let loaded = load_stream::<A>(&*self.store, &stream, Some(version)).await?;
        if loaded.version < version {
            return Err(StoreError::VersionNotFound {
                stream,
                requested: version,
                current: loaded.version,
            });
        }
        Ok(loaded)
    }

    /// The aggregate's state as it was at `at` (time travel by time): after
    /// the events recorded at or before `at`, up to the first one recorded
    /// later. `Loaded::version` says which version that was; 0 (the default
    /// state) when the stream had no event yet.
    ///
    /// The times are the store's recording times (on PostgreSQL, the
    /// appending transaction's start), so two appends racing within a few
    /// milliseconds may carry times out of version order; the state is
    /// then the one before the first later-recorded event, never a state
    /// that skips one.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn load_as_of(&self, id: &str, at: DateTime<Utc>) -> Result<Loaded<A>, StoreError> {
        let stream = Self::stream_id(id);
        let mut version = 0;
        'read: loop {
            let batch = self
                .store
                .read_stream(&stream, version + 1, AS_OF_BATCH)
                .await?;
            let full = batch.len() == AS_OF_BATCH;
            for event in batch {
                if event.recorded_at > at {
                    break 'read;
                }
                version = event.version;
            }
            if !full {
                break;
            }
        }
        load_stream::<A>(&*self.store, &stream, Some(version)).await
    }
}

/// How many events [`CommandPipeline::load_as_of`] reads at a time while it
/// looks for the version it wants.
const AS_OF_BATCH: usize = 1000;

/// Rebuilds an aggregate from its latest usable snapshot plus the events after
/// it, stopping after version `upto` when given.
pub(crate) async fn load_stream<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamId,
    upto: Option<u64>,
) -> Result<Loaded<A>, StoreError> {
    let mut rebuild = Rebuild {
        stream,
        upto,
        loaded: Loaded {
            state: A::default(),
            version: 0,
        },
    };
    let request = ReplayRequest {
        stream,
        upto,
        snapshot_schema: Some(A::SNAPSHOT_VERSION),
    };
    store.replay(request, &mut rebuild).await?;
    Ok(rebuild.loaded)
}

/// Applies a replayed stream to a fresh aggregate, event by event as the
/// store reads them.
struct Rebuild<'a, A> {
    stream: &'a StreamId,
    upto: Option<u64>,
    loaded: Loaded<A>,
}

impl<A: Aggregate> ReplaySink for Rebuild<'_, A> {
    fn snapshot(&mut self, snapshot: &Snapshot) -> bool {
        let usable = snapshot.schema_version == A::SNAPSHOT_VERSION
            && self.upto.is_none_or(|upto| snapshot.version <= upto);
        if !usable {
            return false;
        }
        match restore::<A>(&snapshot.state) {
            Ok(state) => {
                self.loaded = Loaded {
                    state,
                    version: snapshot.version,
                };
                true
            }
            Err(error) => {
                tracing::warn!(stream = %self.stream, version = snapshot.version, %error, "ignoring snapshot that does not deserialize");
                false
            }
        }
    }

    fn event(&mut self, stored: ReplayEvent<'_>) -> Result<(), StoreError> {
        let version = stored.version;
        let expected = self.loaded.version + 1;
        if version != expected || self.upto.is_some_and(|upto| version > upto) {
            return Err(StoreError::Corrupted {
                location: format!("stream {}", self.stream),
                reason: format!(
                    "expected version {expected} after {}, found {version}",
                    self.loaded.version
                ),
            });
        }
        let event = A::Event::decode(stored.event_type, stored.event_version, stored.payload)
            .map_err(|source| crate::DecodeError {
                stream: self.stream.clone(),
                version,
                event_type: stored.event_type.to_owned(),
                event_version: stored.event_version,
                source: Box::new(source),
            })?;
        self.loaded.state.apply(&event);
        self.loaded.version = version;
        Ok(())
    }
}

fn restore<A: Aggregate>(state: &RawValue) -> Result<A, serde_json::Error> {
    serde_json::from_str(state.get())
}
