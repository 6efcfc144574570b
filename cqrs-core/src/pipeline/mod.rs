//! The command pipeline: load, decide, append with the version seen, publish.

mod load;
mod loaded;
pub(crate) mod state_cache;

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

pub use self::loaded::Loaded;
use self::state_cache::{self as cache, StateCache};
use crate::command_id;
use crate::projector::ProjectionError;
use crate::{
    Aggregate, Command, CommandError, DomainEvent, EventEnvelope, EventStore, ExpectedVersion,
    Metadata, NewEvent, PipelineOptions, Projector, RetryPolicy, Snapshot, SnapshotPolicy,
    StoreError, StreamId, telemetry,
};

pub(crate) use self::load::load_stream;

/// What a successful command did.
#[derive(Debug)]
pub struct CommandOutcome<E> {
    /// The command's id: its events' ids derive from it (see
    /// [`command_id`](crate::command_id)). Pass it to
    /// [`execute_once`](CommandPipeline::execute_once) to carry the same
    /// command out again idempotently.
    pub command_id: Uuid,
    /// True when an earlier execution of the same command id had already
    /// stored its events: nothing was appended, and `events` are the ones
    /// stored then.
    pub already_executed: bool,
    /// The stream's version after the command.
    pub version: u64,
    /// The events stored, as committed (empty when the command decided nothing).
    pub events: Vec<EventEnvelope<E>>,
    /// In-process projectors that failed on these events. The events are
    /// stored regardless: do not retry the command; rebuild or catch up the
    /// projector instead.
    pub projector_failures: Vec<ProjectionError>,
}

/// A registered in-process projector.
type SharedProjector<E> = Arc<dyn Projector<Event = E>>;

/// The one call an application makes to carry out a command on aggregate type `A`.
///
/// `execute` loads the aggregate (latest snapshot plus the events after it),
/// asks it to decide, appends the events with the version it saw, then hands
/// the committed envelopes to the in-process projectors, in registration order.
/// If another writer got there first, the [`RetryPolicy`] says whether to
/// reload and decide again.
pub struct CommandPipeline<A: Aggregate> {
    store: Arc<dyn EventStore>,
    services: A::Services,
    projectors: Vec<SharedProjector<A::Event>>,
    retry: RetryPolicy,
    snapshots: SnapshotPolicy,
    cache: Option<StateCache<A>>,
}

impl<A: Aggregate> CommandPipeline<A> {
    /// A pipeline over `store`, with the services `A`'s handlers consult,
    /// no retries, no snapshots, no projectors, and a cache of the
    /// [`DEFAULT_STATE_CACHE`](crate::DEFAULT_STATE_CACHE) most recently used
    /// aggregate states (see [`with_options`](Self::with_options)).
    pub fn new(store: Arc<dyn EventStore>, services: A::Services) -> Self {
        Self {
            store,
            services,
            projectors: Vec::new(),
            retry: RetryPolicy::none(),
            snapshots: SnapshotPolicy::Never,
            cache: StateCache::new(cache::DEFAULT_CAPACITY),
        }
    }

    /// Sets how the pipeline works: its state cache, its retries on
    /// conflicts, its snapshots (see [`PipelineOptions`]).
    pub fn with_options(mut self, options: PipelineOptions) -> Self {
        self.cache = StateCache::new(options.get_state_cache());
        self.retry = options.get_retry();
        self.snapshots = options.get_snapshots();
        self
    }

    /// Adds an in-process projector that sees every committed event of `A`
    /// it declared.
    pub fn with_projector(mut self, projector: Arc<dyn Projector<Event = A::Event>>) -> Self {
        self.projectors.push(projector);
        self
    }

    /// The store this pipeline writes to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The stream of aggregate `id`.
    pub fn stream_id(id: &str) -> StreamId {
        StreamId::new(A::TYPE, id)
    }

    /// Carries out `command` on aggregate `id`, with fresh metadata. The
    /// command may be given as any type that converts into `A::Command`
    /// (the content of a newtype variant, say).
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] with the aggregate's domain error,
    /// [`CommandError::Conflict`] when retries ran out, or a store failure:
    /// in these cases nothing was stored. [`CommandError::OutcomeUnknown`]
    /// when the store's answer was lost and could not be recovered: the
    /// events may be stored; carry the command out again with
    /// [`execute_once`](Self::execute_once) and the id the error gives,
    /// which applies it at most once.
    pub async fn execute(
        &self,
        id: &str,
        command: impl Into<A::Command>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        self.execute_with(id, command, Metadata::new()).await
    }

    /// Carries out `command` on aggregate `id`; every event it produces carries
    /// `metadata`. A missing correlation id is filled with a fresh one, shared
    /// by all the command's events.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub async fn execute_with(
        &self,
        id: &str,
        command: impl Into<A::Command>,
        metadata: Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        self.run(Uuid::now_v7(), false, id, command.into(), metadata)
            .await
    }

    /// Carries out `command` on aggregate `id` at most once per
    /// `command_id`: the ids of its events derive from `command_id`, so if an
    /// execution with this id already stored its events, nothing is appended
    /// and the outcome of that execution is returned, with
    /// [`already_executed`](CommandOutcome::already_executed) set. This is
    /// what to call when retrying after [`CommandError::OutcomeUnknown`], or
    /// to make a request idempotent (an HTTP idempotency key mapped to a
    /// UUID, say).
    ///
    /// A command id belongs to one aggregate: used for another, the
    /// execution is refused with [`StoreError::EventIdReused`]. A first
    /// execution that decided no event leaves nothing to find, so a later
    /// one decides again.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub async fn execute_once(
        &self,
        command_id: Uuid,
        id: &str,
        command: impl Into<A::Command>,
        metadata: Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        self.run(command_id, true, id, command.into(), metadata)
            .await
    }

    /// [`run_once`](Self::run_once), measured (see [`crate::telemetry`]).
    async fn run(
        &self,
        command_id: Uuid,
        maybe_executed: bool,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let started = std::time::Instant::now();
        let result = self
            .run_once(command_id, maybe_executed, id, command, metadata)
            .await;
        let outcome = match &result {
            Ok(outcome) => {
                if !outcome.already_executed && !outcome.events.is_empty() {
                    metrics::counter!(telemetry::EVENTS_APPENDED, "aggregate" => A::TYPE)
                        .increment(outcome.events.len() as u64);
                }
                "executed"
            }
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict(_)) => "conflicted",
            Err(_) => "failed",
        };
        metrics::counter!(telemetry::COMMANDS, "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(telemetry::COMMAND_DURATION, "aggregate" => A::TYPE)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn run_once(
        &self,
        command_id: Uuid,
        maybe_executed: bool,
        id: &str,
        command: A::Command,
        mut metadata: Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let stream = Self::stream_id(id);
        if maybe_executed {
            if let Some(outcome) = self.executed(command_id, &stream).await? {
                return Ok(outcome);
            }
        }
        metadata.correlation_id.get_or_insert_with(Uuid::now_v7);
        let mut attempt = 0;
        loop {
            let attempted = self.attempt(command_id, &stream, &command, &metadata).await;
            // An earlier execution of this command id may have committed
            // after the check above (its answer lost while its COMMIT was
            // still on its way): a state that moved under this attempt, or
            // a refusal on the new state, may be its doing. Its outcome is
            // this one's.
            if maybe_executed
                && matches!(
                    attempted,
                    Err(CommandError::Rejected(_) | CommandError::Conflict(_))
                )
            {
                if let Some(outcome) = self.executed(command_id, &stream).await? {
                    return Ok(outcome);
                }
            }
            match attempted {
                Err(CommandError::Conflict(conflict)) if attempt < self.retry.max_retries => {
                    attempt += 1;
                    metrics::counter!(telemetry::COMMAND_RETRIES, "aggregate" => A::TYPE)
                        .increment(1);
                    tracing::debug!(
                        %conflict,
                        attempt,
                        command = command.command_type(),
                        "retrying command after conflict"
                    );
                }
                // Another execution of the same command id got there first
                // (a double submit): its outcome is this one's.
                Err(CommandError::Store(StoreError::EventIdReused { event_id, stream }))
                    if maybe_executed =>
                {
                    return match self.executed(command_id, &stream).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(StoreError::EventIdReused { event_id, stream }.into()),
                    };
                }
                other => return other,
            }
        }
    }

    /// The outcome of an earlier execution of `command_id` on `stream`, if
    /// one stored events.
    async fn executed(
        &self,
        command_id: Uuid,
        stream: &StreamId,
    ) -> Result<Option<CommandOutcome<A::Event>>, CommandError<A::Error>> {
        let first_id = command_id::event_id(command_id, 0);
        let Some(first) = self.store.event_by_id(first_id).await? else {
            return Ok(None);
        };
        if first.stream != *stream {
            return Err(StoreError::EventIdReused {
                event_id: first_id,
                stream: stream.clone(),
            }
            .into());
        }
        let mut events = Vec::new();
        let mut from = first.version;
        'read: loop {
            let batch = self.store.read_stream(stream, from, 100).await?;
            let full = batch.len() == 100;
            for stored in batch {
                if stored.event_id != command_id::event_id(command_id, events.len()) {
                    break 'read;
                }
                from = stored.version + 1;
                events.push(stored.decode::<A::Event>().map_err(StoreError::from)?);
            }
            if !full {
                break;
            }
        }
        Ok(Some(CommandOutcome {
            command_id,
            already_executed: true,
            version: events.last().map_or(first.version, |event| event.version),
            events,
            projector_failures: Vec::new(),
        }))
    }

    /// Carries out `command` as a consequence of `event` (what a process
    /// manager does): the command's events get the event's correlation id and
    /// the event's id as causation id, so the chain can be followed. The
    /// command id is derived from the event, the target aggregate and the
    /// command's type ([`command_id::for_event`]), so a process manager that
    /// handles the same event twice (after a crash, a redelivery) applies the
    /// command once; see [`execute_once`](Self::execute_once).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub async fn execute_caused_by<E>(
        &self,
        id: &str,
        command: impl Into<A::Command>,
        event: &EventEnvelope<E>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let command = command.into();
        let command_id = command_id::for_event(event, &Self::stream_id(id), command.command_type());
        self.run(command_id, true, id, command, Metadata::caused_by(event))
            .await
    }

    async fn attempt(
        &self,
        command_id: Uuid,
        stream: &StreamId,
        command: &A::Command,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.take(&stream.aggregate_id));
        // A creating command on an aggregate not in the cache is decided on
        // the state before the first event, without a load: its append
        // (expecting no stream) proves the guess or refuses it.
        let guess = cached.or_else(|| {
            command.creates_aggregate().then(|| Loaded {
                state: A::default(),
                version: 0,
            })
        });
        if let Some(guess) = guess {
            // A cached state may be stale (another process appended since):
            // only an append, whose version check proves the state, stands.
            match self
                .decide(command_id, stream, command, metadata, guess)
                .await
            {
                Ok(outcome) if !outcome.events.is_empty() => return Ok(outcome),
                Ok(_) | Err(CommandError::Rejected(_) | CommandError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let fresh = load_stream::<A>(&*self.store, stream, None).await?;
        self.decide(command_id, stream, command, metadata, fresh)
            .await
    }

    /// Decides `command` on `loaded`, appends what it decided with the
    /// version it saw, and publishes it.
    async fn decide(
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
