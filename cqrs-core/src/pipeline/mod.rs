//! The command pipeline: load, decide, append with the version seen, publish.

mod decide;
mod executed;
mod load;
mod loaded;
mod outcome;
pub(crate) mod state_cache;

use std::sync::Arc;

use uuid::Uuid;

pub use self::loaded::Loaded;
pub use self::outcome::CommandOutcome;
use self::state_cache::{self as cache, StateCache};
use crate::command_id;
use crate::{
    Aggregate, Command, CommandError, EventEnvelope, EventStore, Metadata, PipelineOptions,
    Projector, RetryPolicy, SnapshotPolicy, StoreError, StreamId, telemetry,
};

pub(crate) use self::load::load_stream;

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
}
