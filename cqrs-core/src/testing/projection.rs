//! Given events of one or several aggregates, then a read model.

use std::fmt::Debug;
use std::sync::Arc;

use crate::{
    Aggregate, EventStore, ExpectedVersion, InMemoryEventStore, Metadata, NewEvent, Position,
    Projector, Query, QueryHandler, StreamId, catch_up,
};

/// Events given to a fixture, by stream, in the order given.
#[derive(Default)]
pub(super) struct Given(Vec<(StreamId, NewEvent)>);

impl Given {
    /// Adds `events` to the stream of aggregate `id` of type `A`.
    ///
    /// # Panics
    ///
    /// When an event does not serialize.
    #[track_caller]
    pub(super) fn add<A: Aggregate, E: Into<A::Event>>(
        &mut self,
        id: &str,
        events: impl IntoIterator<Item = E>,
    ) {
        let stream = StreamId::new(A::TYPE, id);
        for event in events {
            let event = NewEvent::from_event(&event.into(), Metadata::new())
                .unwrap_or_else(|error| panic!("a given event does not serialize: {error}"));
            self.0.push((stream.clone(), event));
        }
    }

    /// Appends everything given to `store`, each event after the ones
    /// before it on its stream.
    ///
    /// # Panics
    ///
    /// When the store refuses.
    pub(super) async fn append_to(self, store: &dyn EventStore) {
        for (stream, event) in self.0 {
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .unwrap_or_else(|error| panic!("appending a given event to {stream}: {error}"));
        }
    }
}

/// A test of a projector: given events (of any aggregates it reads), then
/// what its read model answers. The projector runs over an in-memory store;
/// for a read model kept in PostgreSQL, use the `testing` feature of the
/// PostgreSQL store (a throwaway schema and `caught_up`).
///
/// ```
/// # use std::sync::Mutex;
/// # use cqrskit::{BoxError, EventEnvelope, Projector, Query, QueryHandler};
/// # use cqrskit::testing::ProjectionFixture;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, cqrskit::DomainEvent)]
/// # pub enum CounterEvent { Incremented(Incremented) }
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # pub struct Incremented { by: u32 }
/// # #[derive(Default, Serialize, Deserialize)]
/// # struct Counter;
/// # impl cqrskit::Aggregate for Counter {
/// #     const TYPE: &'static str = "counter";
/// #     type Command = Nothing; type Event = CounterEvent; type Error = std::convert::Infallible; type Services = ();
/// #     async fn handle(&self, _: &Nothing, _: &()) -> Result<Vec<CounterEvent>, Self::Error> { Ok(vec![]) }
/// #     fn apply(&mut self, _: &CounterEvent) {}
/// # }
/// # pub struct Nothing;
/// # impl cqrskit::Command for Nothing { fn command_type(&self) -> &'static str { "Nothing" } }
/// #[derive(Default)]
/// struct Total(Mutex<u32>);
///
/// #[cqrskit::async_trait]
/// impl Projector for Total {
///     type Event = CounterEvent;
///     fn name(&self) -> &str { "total" }
///     async fn project(&self, event: &EventEnvelope<CounterEvent>, _: &mut ()) -> Result<(), BoxError> {
///         let CounterEvent::Incremented(incremented) = &event.payload;
///         *self.0.lock().unwrap() += incremented.by;
///         Ok(())
///     }
/// }
///
/// struct GetTotal;
/// impl Query for GetTotal { type Output = u32; }
/// impl QueryHandler<GetTotal> for Total {
///     type Error = std::convert::Infallible;
///     async fn handle(&self, _: GetTotal) -> Result<u32, Self::Error> { Ok(*self.0.lock().unwrap()) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// ProjectionFixture::new(Total::default())
///     .given::<Counter, _>("a", [Incremented { by: 2 }])
///     .given::<Counter, _>("b", [Incremented { by: 3 }])
///     .then_expect(GetTotal, 5)
///     .await;
/// # });
/// ```
pub struct ProjectionFixture<P: Projector> {
    projector: Arc<P>,
    given: Given,
}

impl<P: Projector> ProjectionFixture<P> {
    /// A fixture for `projector`, with nothing given yet.
    pub fn new(projector: P) -> Self {
        Self {
            projector: Arc::new(projector),
            given: Given::default(),
        }
    }

    /// Events of aggregate `id` of type `A`, after those given before (call
    /// it for each aggregate, of any type the projector reads).
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

    /// Runs the projector over everything given (only the event types it
    /// declares, in log order), then hands it to `check`.
    ///
    /// # Panics
    ///
    /// When the projector fails on an event (the report names it), or
    /// `check` panics.
    pub async fn then(self, check: impl FnOnce(&P)) -> Arc<P> {
        let store = InMemoryEventStore::new();
        self.given.append_to(&store).await;
        if let Err(error) = catch_up(&store, &*self.projector, Position::START, 100).await {
            panic!("the projector failed on a given event: {error}");
        }
        check(&self.projector);
        self.projector
    }

    /// Runs the projector over everything given, then asks its read model
    /// `query` and compares the answer with `expected`.
    ///
    /// # Panics
    ///
    /// When the projector fails, the query fails, or the answer differs
    /// (expected and actual are shown).
    pub async fn then_expect<Q>(self, query: Q, expected: Q::Output) -> Arc<P>
    where
        Q: Query,
        Q::Output: PartialEq + Debug,
        P: QueryHandler<Q>,
    {
        let projector = self.then(|_| {}).await;
        let actual = projector
            .handle(query)
            .await
            .unwrap_or_else(|error| panic!("the query failed: {error}"));
        assert!(
            actual == expected,
            "the read model answered other than expected\n  expected: {expected:#?}\n    actual: {actual:#?}"
        );
        projector
    }
}
