//! One decision: the aggregate decides on a loaded state, its events are
//! appended with the version it saw (a snapshot riding along when one is
//! due), the state goes back to the cache, and the in-process projectors
//! see what was committed.

use chrono::Utc;
use uuid::Uuid;

use super::{CommandOutcome, CommandPipeline, Loaded};
use crate::projector::ProjectionError;
use crate::{
    Aggregate, CommandError, DomainEvent, EventEnvelope, ExpectedVersion, Metadata, NewEvent,
    Snapshot, StoreError, StreamId, command_id, telemetry,
};

impl<A: Aggregate> CommandPipeline<A> {
    /// Decides `command` on `loaded`, appends what it decided with the
    /// version it saw, and publishes it.
    pub(super) async fn decide(
        &self,
        command_id: Uuid,
        stream: &StreamId,
        command: &A::Command,
        metadata: &Metadata,
        loaded: Loaded<A>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let Loaded { mut state, version } = loaded;
        let events = state
            .handle(command, &self.services)
            .await
            .map_err(CommandError::Rejected)?;
        if events.is_empty() {
            if let Some(cache) = &self.cache {
                cache.put(&stream.aggregate_id, Loaded { state, version });
            }
            return Ok(CommandOutcome {
                command_id,
                already_executed: false,
                version,
                events: Vec::new(),
                projector_failures: Vec::new(),
            });
        }
        let new_events = events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let mut new_event = NewEvent::from_event(event, metadata.clone())?;
                new_event.event_id = command_id::event_id(command_id, index);
                Ok(new_event)
            })
            .collect::<Result<Vec<_>, crate::EncodeError>>()
            .map_err(StoreError::from)?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        // The state after these events is needed for the cache and for a
        // snapshot due at their last version; the snapshot then rides in
        // the append itself (one commit, not two).
        let ends_at = version + events.len() as u64;
        let snapshot_due = self.snapshots.is_due(version, ends_at);
        if self.cache.is_some() || snapshot_due {
            for event in &events {
                state.apply(event);
            }
        }
        let snapshot = if snapshot_due {
            self.snapshot_of(stream, &state, ends_at)
        } else {
            None
        };
        let appended = self
            .append(command_id, stream, expected, new_events, snapshot)
            .await?;

        let envelopes: Vec<EventEnvelope<A::Event>> = events
            .into_iter()
            .zip(appended.events)
            .map(|(event, committed)| EventEnvelope {
                event_id: committed.event_id,
                stream: stream.clone(),
                version: committed.version,
                position: committed.position,
                event_type: event.event_type().to_owned(),
                event_version: event.event_version(),
                payload: event,
                metadata: metadata.clone(),
                recorded_at: committed.recorded_at,
            })
            .collect();

        // The version right after this command's events: an append found
        // already stored reports the stream's version now, which other
        // writers may have moved on since.
        let after = envelopes
            .last()
            .map_or(appended.stream_version, |event| event.version);
        if let (Some(cache), false) = (&self.cache, appended.already_stored) {
            cache.put(
                &stream.aggregate_id,
                Loaded {
                    state,
                    version: after,
                },
            );
        }

        let projector_failures = self.publish(&envelopes).await;
        Ok(CommandOutcome {
            command_id,
            already_executed: false,
            version: after,
            events: envelopes,
            projector_failures,
        })
    }

    /// Appends, with `snapshot` when one is due; a lost answer (which the
    /// store could not resolve by sending the same events again itself)
    /// becomes [`CommandError::OutcomeUnknown`] with the command's id.
    async fn append(
        &self,
        command_id: Uuid,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    ) -> Result<crate::AppendResult, CommandError<A::Error>> {
        let started = std::time::Instant::now();
        let appended = match snapshot {
            Some(snapshot) => {
                self.store
                    .append_with_snapshot(stream, expected, events, snapshot)
                    .await
            }
            None => self.store.append(stream, expected, events).await,
        };
        let outcome = match &appended {
            Ok(_) => "appended",
            Err(StoreError::Conflict(_)) => "conflicted",
            Err(_) => "failed",
        };
        metrics::histogram!(telemetry::APPEND_DURATION, "aggregate" => A::TYPE, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match appended {
            Err(source @ StoreError::OutcomeUnknown(_)) => {
                Err(CommandError::OutcomeUnknown { command_id, source })
            }
            other => Ok(other?),
        }
    }

    /// The snapshot of `state` at `version`; `None`, logged, when the state
    /// does not serialize (a snapshot is an optimisation, never a reason
    /// to fail a command).
    fn snapshot_of(&self, stream: &StreamId, state: &A, version: u64) -> Option<Snapshot> {
        match serde_json::value::to_raw_value(state) {
            Ok(state) => Some(Snapshot {
                stream: stream.clone(),
                version,
                schema_version: A::SNAPSHOT_VERSION,
                state,
                taken_at: Utc::now(),
            }),
            Err(error) => {
                tracing::warn!(%stream, version, %error, "cannot serialize aggregate state for a snapshot");
                None
            }
        }
    }

    async fn publish(&self, envelopes: &[EventEnvelope<A::Event>]) -> Vec<ProjectionError> {
        let mut failures = Vec::new();
        for projector in &self.projectors {
            let wanted = projector.event_types();
            for envelope in envelopes {
                if !wanted.contains(&envelope.event_type.as_str()) {
                    continue;
                }
                if let Err(source) = projector.project(envelope, &mut ()).await {
                    let failure = ProjectionError::new(projector.name(), envelope, source);
                    tracing::error!(error = %failure, "in-process projector failed");
                    failures.push(failure);
                    // Later events of this command would build on the missed one.
                    break;
                }
            }
        }
        failures
    }
}
