//! Projectors: consumers of events that keep read models up to date.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{BoxError, DomainEvent, EventEnvelope, EventStore, LogFilter, Position, StoreError};

/// Turns events into a read model (or any other effect).
///
/// `C` is the context each call receives along with the event: `()` for a
/// projector that keeps its read model itself (in memory, or behind its own
/// connection), a database connection for one whose writes must commit
/// together with its checkpoint (the PostgreSQL runner runs `Projector<PgConnection>`
/// this way, so its read models are updated exactly once). The `#[projector]`
/// macro implements `Projector<()>` when no method takes a context, and
/// `Projector<C>` when its methods take `&mut C`.
///
/// A projector runs in-process after each command (registered on a
/// [`CommandPipeline`](crate::CommandPipeline)) or over the global log
/// ([`catch_up`], or a store's projection runner). It sees the whole envelope,
/// so it can use the event id to deduplicate effects outside its own store.
///
/// Object safe, so pipelines can hold several of different types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projector of context `{C}`",
    label = "this projector does not run with a `{C}`",
    note = "a projector whose methods take no context is a `Projector<()>`: to run it under a store's runner (which hands it a `{C}`), wrap it in `cqrskit::Detached`, as `Arc::new(Detached(Arc::new(projector)))`",
    note = "a projector that writes its read model in the runner's transaction takes the context in its methods (`&mut PgConnection` for PostgreSQL)"
)]
#[async_trait]
pub trait Projector<C: ?Sized + Send = ()>: Send + Sync {
    /// The events it consumes.
    type Event: DomainEvent;

    /// A stable name, used for checkpoints and in error reports.
    fn name(&self) -> &str;

    /// The stored type names it needs; others are never delivered to it.
    /// Defaults to every type of [`Self::Event`](Projector::Event).
    fn event_types(&self) -> &'static [&'static str] {
        <Self::Event as DomainEvent>::EVENT_TYPES
    }

    /// Whether it reads the envelopes' [`metadata`](EventEnvelope::metadata).
    /// A runner that reads the log for a projector that does not leaves the
    /// metadata out of the read (the envelopes then carry empty metadata):
    /// less to send and parse per event. Defaults to `true`; `#[projector]`
    /// answers `false` when no method takes the envelope.
    fn reads_metadata(&self) -> bool {
        true
    }

    /// Whether every event it handles must reach it once, in log order,
    /// through one runner: a relay to a broker, whose stream must hold the
    /// events in the order they were stored. A runner refuses to run such a
    /// projector in partitions, or with a failure policy that parks events
    /// (an event parked and replayed later would be published out of order,
    /// or not at all). Defaults to `false`.
    fn requires_log_order(&self) -> bool {
        false
    }

    /// Why it cannot run in partitions (slice ranges of the log, each
    /// applied by a runner of its own), if it cannot: a read model whose rows
    /// gather events of several streams (a customer's document changed by
    /// each of their orders) would have partitions race on one row. A
    /// partitioned runner refuses to start such a projector, with this
    /// reason. Defaults to `None` (it can): a projector whose rows each
    /// belong to one stream. Document read models answer by their identity.
    fn partition_refusal(&self) -> Option<&'static str> {
        None
    }

    /// Processes one event.
    ///
    /// # Errors
    ///
    /// Any error of the projector's own; the caller reports it with the event.
    async fn project(
        &self,
        event: &EventEnvelope<Self::Event>,
        context: &mut C,
    ) -> Result<(), BoxError>;

    /// Processes consecutive events, in order. The default calls
    /// [`project`](Self::project) for each; override it to write a whole batch
    /// in a few statements (one multi-row insert instead of one per event).
    /// Runners call it with up to their batch size of events; when it fails,
    /// they process the same events one by one to find the failing one.
    ///
    /// # Errors
    ///
    /// Any error of the projector's own.
    async fn project_batch(
        &self,
        events: &[EventEnvelope<Self::Event>],
        context: &mut C,
    ) -> Result<(), BoxError> {
        for event in events {
            self.project(event, context).await?;
        }
        Ok(())
    }

    /// The events that will most likely be applied next: those after
    /// `after`, handed over by a runner that read them ahead while the batch
    /// ending at `after` is still being applied and committed. A hint, not a
    /// delivery: they may never reach [`project_batch`](Self::project_batch)
    /// from this runner (the current batch fails, the lease is lost), may be
    /// handed over again, or not at all; and the runner does not wait for
    /// this to finish. Only work that is safe to waste and to do twice
    /// belongs here: warming a cache, or sending messages whose receiver
    /// drops copies (the NATS relay publishes the next batch early, so the
    /// broker never idles between batches). The default does nothing.
    async fn look_ahead(&self, after: Position, events: &[EventEnvelope<Self::Event>]) {
        let _ = (after, events);
    }

    /// Creates what the read model needs (tables, indexes), idempotently:
    /// `CREATE TABLE IF NOT EXISTS`, never a `DROP`. Runners call it before
    /// their first batch and before a rebuild, with the context they project
    /// with (on PostgreSQL, a transaction that holds the projection's row, so
    /// two runners never run it at once), so a projection's tables come into
    /// being with it, in the database of its events, and again after a
    /// restart. The transaction's `search_path` is the connection's own, not
    /// the store's schema: a store in a schema other than the default
    /// qualifies its read models' table names. The default does nothing
    /// (`#[setup]` with the macro).
    ///
    /// # Errors
    ///
    /// Any error of the projector's own; the runner applies nothing until it
    /// succeeds.
    async fn setup(&self, context: &mut C) -> Result<(), BoxError> {
        let _ = context;
        Ok(())
    }

    /// Clears the read model before a rebuild replays the log from the start.
    /// The default does nothing: override it (`#[reset]` with the macro) for
    /// any projector that will be rebuilt, or the replay lands on top of the
    /// old rows.
    ///
    /// # Errors
    ///
    /// Any error of the projector's own; the rebuild is then not started.
    async fn reset(&self, context: &mut C) -> Result<(), BoxError> {
        let _ = context;
        Ok(())
    }
}

/// Runs a projector written for the in-process context `()` wherever another
/// context is offered (the PostgreSQL runner's transaction, say), ignoring
/// that context. Its effects then happen outside the runner's transaction:
/// at-least-once, so it must deduplicate them (by event id, or by commands
/// that are idempotent). This is how a process manager, whose effect is
/// commands, runs under a runner with a durable checkpoint.
pub struct Detached<P: ?Sized>(pub Arc<P>);

#[async_trait]
impl<P, C> Projector<C> for Detached<P>
where
    P: Projector + ?Sized,
    C: ?Sized + Send,
{
    type Event = P::Event;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.0.event_types()
    }

    fn reads_metadata(&self) -> bool {
        self.0.reads_metadata()
    }

    fn requires_log_order(&self) -> bool {
        self.0.requires_log_order()
    }

    fn partition_refusal(&self) -> Option<&'static str> {
        self.0.partition_refusal()
    }

    async fn project(
        &self,
        event: &EventEnvelope<Self::Event>,
        _context: &mut C,
    ) -> Result<(), BoxError> {
        self.0.project(event, &mut ()).await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<Self::Event>],
        _context: &mut C,
    ) -> Result<(), BoxError> {
        self.0.project_batch(events, &mut ()).await
    }

    async fn look_ahead(&self, after: Position, events: &[EventEnvelope<Self::Event>]) {
        self.0.look_ahead(after, events).await;
    }

    async fn setup(&self, _context: &mut C) -> Result<(), BoxError> {
        self.0.setup(&mut ()).await
    }

    async fn reset(&self, _context: &mut C) -> Result<(), BoxError> {
        self.0.reset(&mut ()).await
    }
}

/// A projector that failed on one event.
#[derive(Debug, thiserror::Error)]
#[error(
    "projector `{projector}` failed on event {event_id} ({event_type}, version {version} of {stream}): {source}"
)]
pub struct ProjectionError {
    /// The projector's name.
    pub projector: String,
    /// The event it failed on.
    pub event_id: uuid::Uuid,
    /// That event's type.
    pub event_type: String,
    /// That event's stream.
    pub stream: crate::StreamId,
    /// That event's version in its stream.
    pub version: u64,
    /// What the projector reported.
    #[source]
    pub source: BoxError,
}

impl ProjectionError {
    /// The failure of `projector` on `event`.
    pub fn new<E>(projector: &str, event: &EventEnvelope<E>, source: BoxError) -> Self {
        Self {
            projector: projector.to_owned(),
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream: event.stream.clone(),
            version: event.version,
            source,
        }
    }
}

/// Feeds `projector` every event of the global log after `from` that it
/// declared, in batches of `batch_size`, until the end of the log. Returns the
/// position of the last event read (or `from` when there was none): the
/// checkpoint to resume from.
///
/// # Errors
///
/// A store or decode failure, or the projector's own error
/// ([`StoreError::Projection`]) with the position to resume from. No event
/// is ever skipped.
pub async fn catch_up<P: Projector + ?Sized>(
    store: &dyn EventStore,
    projector: &P,
    from: Position,
    batch_size: usize,
) -> Result<Position, StoreError> {
    let filter = LogFilter::event_types(projector.event_types().iter().copied());
    let mut checkpoint = from;
    loop {
        let batch = store
            .read_log(checkpoint, &filter, batch_size.max(1))
            .await?;
        let Some(last) = batch.last().map(|event| event.position) else {
            return Ok(checkpoint);
        };
        for stored in batch {
            let position = stored.position;
            let event = stored.decode::<P::Event>().map_err(StoreError::from)?;
            projector
                .project(&event, &mut ())
                .await
                .map_err(|source| StoreError::Projection {
                    source: Box::new(ProjectionError::new(projector.name(), &event, source)),
                    checkpoint: Some(checkpoint),
                })?;
            checkpoint = position;
        }
        debug_assert_eq!(checkpoint, last);
    }
}
