//! Given events, then the commands a process manager issues, seen by the
//! events they produced.

use std::fmt::Debug;
use std::sync::Arc;

use super::diff::event_diff;
use super::projection::Given;
use crate::{
    Aggregate, DomainEvent, EventStore, InMemoryEventStore, LogFilter, Position, Projector,
    StoredEvent, StreamId, catch_up,
};

/// A test of a process manager (a saga): given events, then the events
/// its commands produced on each aggregate. The process manager is built
/// over the fixture's in-memory store, so its pipelines execute its
/// commands for real (with the aggregates' own rules); it runs until it
/// has nothing more to do, reacting to what its own commands appended.
///
/// The e-commerce example's tests show it on the fulfilment process:
/// `ProcessFixture::new(|store| Fulfilment::new(...pipelines over store...))`,
/// `.given::<Inventory, _>("tea", [...])`, `.given::<Order, _>("o1", [...])`,
/// `.when_processed().await`, then
/// `.then_expect_events::<Inventory, _>("tea", [StockReserved { .. }]).await`.
pub struct ProcessFixture<P: Projector> {
    store: Arc<InMemoryEventStore>,
    process: Arc<P>,
    given: Given,
}

impl<P: Projector> ProcessFixture<P> {
    /// A fixture for the process manager `build` makes over the fixture's
    /// store.
    pub fn new(build: impl FnOnce(Arc<dyn EventStore>) -> P) -> Self {
        let store = Arc::new(InMemoryEventStore::new());
        let process = Arc::new(build(store.clone()));
        Self {
            store,
            process,
            given: Given::default(),
        }
    }

    /// Events of aggregate `id` of type `A`, after those given before.
    ///
    /// # Panics
    ///
    /// When an event does not serialize.
    #[track_caller]
    pub fn given<A: Aggregate, E: Into<A::Event>>(
        mut self,
        id: &str,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        self.given.add::<A, E>(id, events);
        self
    }

    /// Appends what was given, then runs the process manager until a pass
    /// over the log finds nothing new.
    ///
    /// # Panics
    ///
    /// When the process manager fails on an event (the report names it).
    pub async fn when_processed(self) -> ProcessThen {
        self.given.append_to(&*self.store).await;
        let given = last_position(&*self.store).await;
        let mut checkpoint = Position::START;
        loop {
            let reached = catch_up(&*self.store, &*self.process, checkpoint, 100)
                .await
                .unwrap_or_else(|error| panic!("the process manager failed: {error}"));
            if reached == checkpoint {
                break;
            }
            checkpoint = reached;
        }
        ProcessThen {
            store: self.store,
            given,
        }
    }
}

/// The position of the last event in `store`'s log.
async fn last_position(store: &dyn EventStore) -> Position {
    let mut last = Position::START;
    loop {
        let batch = store
            .read_log(last, &LogFilter::all(), 1000)
            .await
            .unwrap_or_else(|error| panic!("reading the log: {error}"));
        match batch.last() {
            Some(event) => last = event.position,
            None => return last,
        }
    }
}

/// What a process manager's commands produced (see
/// [`ProcessFixture::when_processed`]).
pub struct ProcessThen {
    store: Arc<InMemoryEventStore>,
    given: Position,
}

impl ProcessThen {
    /// Every event appended after the given ones: by the process manager's
    /// commands.
    async fn produced(&self) -> Vec<StoredEvent> {
        let mut events = Vec::new();
        let mut after = self.given;
        loop {
            let batch = self
                .store
                .read_log(after, &LogFilter::all(), 1000)
                .await
                .unwrap_or_else(|error| panic!("reading the log: {error}"));
            let Some(last) = batch.last() else {
                return events;
            };
            after = last.position;
            events.extend(batch);
        }
    }

    /// Asserts that the commands produced exactly `expected` on aggregate
    /// `id` of type `A`, in order.
    ///
    /// # Panics
    ///
    /// When they produced other events there; the report lists expected and
    /// actual side by side.
    pub async fn then_expect_events<A: Aggregate, E: Into<A::Event>>(
        self,
        id: &str,
        expected: impl IntoIterator<Item = E>,
    ) -> Self
    where
        A::Event: PartialEq + Debug,
    {
        let stream = StreamId::new(A::TYPE, id);
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        let actual: Vec<A::Event> = self
            .produced()
            .await
            .into_iter()
            .filter(|event| event.stream == stream)
            .map(|event| {
                A::Event::decode(&event.event_type, event.event_version, event.payload.get())
                    .unwrap_or_else(|error| panic!("an event of {stream} does not decode: {error}"))
            })
            .collect();
        if actual != expected {
            panic!(
                "{}",
                event_diff(
                    &format!("the process manager's commands on {stream}"),
                    &expected,
                    &actual
                )
            );
        }
        self
    }

    /// Asserts that the commands produced no event at all.
    ///
    /// # Panics
    ///
    /// When they did; the report lists them.
    pub async fn then_expect_nothing(self) -> Self {
        let produced = self.produced().await;
        assert!(
            produced.is_empty(),
            "the process manager's commands produced events: {:#?}",
            produced
                .iter()
                .map(|event| format!("{} {} v{}", event.stream, event.event_type, event.version))
                .collect::<Vec<_>>()
        );
        self
    }
}
