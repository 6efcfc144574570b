//! Given/when/then tests: [`AggregateFixture`] for an aggregate's decisions
//! (no store involved), [`ProjectionFixture`] for a read model fed by
//! events of one or several aggregates, [`ProcessFixture`] for the commands
//! a process manager issues. Each panics with a readable report, expected
//! and actual side by side.
//!
//! ```
//! # use cqrskit::{Aggregate, Command, DomainEvent};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Counter { value: u32 }
//! # enum CounterCommand { Increment }
//! # impl Command for CounterCommand { fn command_type(&self) -> &'static str { "Increment" } }
//! # #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! # enum CounterEvent { Incremented { to: u32 } }
//! # impl DomainEvent for CounterEvent {
//! #     const EVENT_TYPES: &'static [&'static str] = &["Incremented"];
//! #     fn event_type(&self) -> &'static str { "Incremented" }
//! # }
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # #[error("counter is full")]
//! # struct Full;
//! # impl Aggregate for Counter {
//! #     const TYPE: &'static str = "counter";
//! #     type Command = CounterCommand;
//! #     type Event = CounterEvent;
//! #     type Error = Full;
//! #     type Services = ();
//! #     async fn handle(&self, _: &CounterCommand, _: &()) -> Result<Vec<CounterEvent>, Full> {
//! #         if self.value == 2 { return Err(Full) }
//! #         Ok(vec![CounterEvent::Incremented { to: self.value + 1 }])
//! #     }
//! #     fn apply(&mut self, CounterEvent::Incremented { to }: &CounterEvent) { self.value = *to; }
//! # }
//! use cqrskit::testing::AggregateFixture;
//!
//! # block_on(async {
//! AggregateFixture::<Counter>::new(())
//!     .given([CounterEvent::Incremented { to: 1 }])
//!     .when(CounterCommand::Increment)
//!     .await
//!     .then_expect_events([CounterEvent::Incremented { to: 2 }]);
//!
//! AggregateFixture::<Counter>::new(())
//!     .given([CounterEvent::Incremented { to: 1 }, CounterEvent::Incremented { to: 2 }])
//!     .when(CounterCommand::Increment)
//!     .await
//!     .then_expect_error(Full);
//! # });
//! # fn block_on<F: std::future::Future>(future: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
//! # }
//! ```

mod diff;
mod process;
mod projection;

use std::fmt::Debug;

use self::diff::event_diff;
use crate::Aggregate;

pub use process::ProcessFixture;
pub use projection::ProjectionFixture;

/// A test of one command against an aggregate rebuilt from past events.
pub struct AggregateFixture<A: Aggregate> {
    services: A::Services,
    state: A,
    given: usize,
}

impl<A: Aggregate> AggregateFixture<A> {
    /// A fixture whose handlers see `services`.
    pub fn new(services: A::Services) -> Self {
        Self {
            services,
            state: A::default(),
            given: 0,
        }
    }

    /// No past events: the command meets an aggregate that does not exist
    /// yet. (`given([])` cannot say which event type its empty array holds;
    /// this says it, and reads as the test means it.)
    pub fn given_no_events(self) -> Self {
        self
    }

    /// Past events, applied in order (may be called several times; for
    /// none, [`given_no_events`](Self::given_no_events)).
    pub fn given<E: Into<A::Event>>(mut self, events: impl IntoIterator<Item = E>) -> Self {
        for event in events {
            self.state.apply(&event.into());
            self.given += 1;
        }
        self
    }

    /// Lets the aggregate decide `command`; the returned [`Then`] checks the outcome.
    pub async fn when(self, command: impl Into<A::Command>) -> Then<A> {
        let result = self.state.handle(&command.into(), &self.services).await;
        let mut state = self.state;
        if let Ok(events) = &result {
            for event in events {
                state.apply(event);
            }
        }
        Then { result, state }
    }
}

/// The outcome of [`AggregateFixture::when`]. Each `then_*` method panics with
/// a readable report when the outcome is not the one expected.
pub struct Then<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
    state: A,
}

impl<A: Aggregate> Then<A> {
    /// Asserts that the command produced exactly `expected`, in order.
    ///
    /// # Panics
    ///
    /// When it was rejected or produced other events; the message lists
    /// expected and actual events side by side, marking each difference.
    #[track_caller]
    pub fn then_expect_events<E: Into<A::Event>>(
        self,
        expected: impl IntoIterator<Item = E>,
    ) -> Self
    where
        A::Event: PartialEq + Debug,
        A::Error: Debug,
    {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        match &self.result {
            Ok(actual) if *actual == expected => {}
            Ok(actual) => panic!("{}", event_diff("the command", &expected, actual)),
            Err(error) => panic!(
                "expected events, but the command was rejected\n  expected: {expected:#?}\n  rejected: {error:?}"
            ),
        }
        self
    }

    /// Asserts that the command was rejected with `expected`.
    ///
    /// # Panics
    ///
    /// When it succeeded or failed with another error.
    #[track_caller]
    pub fn then_expect_error(self, expected: A::Error) -> Self
    where
        A::Event: Debug,
        A::Error: PartialEq + Debug,
    {
        match &self.result {
            Err(error) if *error == expected => {}
            Err(error) => panic!(
                "the command was rejected with another error\n  expected: {expected:?}\n    actual: {error:?}"
            ),
            Ok(events) => panic!(
                "expected the command to be rejected, but it produced events\n  expected error: {expected:?}\n  events: {events:#?}"
            ),
        }
        self
    }

    /// Asserts that the command was rejected with an error whose message is `expected`.
    ///
    /// # Panics
    ///
    /// When it succeeded or its error displays otherwise.
    #[track_caller]
    pub fn then_expect_error_message(self, expected: &str) -> Self
    where
        A::Event: Debug,
    {
        match &self.result {
            Err(error) if error.to_string() == expected => {}
            Err(error) => panic!(
                "the command was rejected with another message\n  expected: {expected}\n    actual: {error}"
            ),
            Ok(events) => panic!(
                "expected the command to be rejected, but it produced events\n  expected error: {expected}\n  events: {events:#?}"
            ),
        }
        self
    }

    /// Asserts something about the state after the given and the new events.
    ///
    /// # Panics
    ///
    /// When `check` panics.
    #[track_caller]
    pub fn then_expect_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.state);
        self
    }

    /// The raw outcome, for assertions the methods above do not cover.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

/// Lines of expected and actual events, marking each position that differs.
#[cfg(test)]
mod tests {
    use super::diff::event_diff;

    #[test]
    fn diff_marks_each_differing_position() {
        let report = event_diff("the command", &["a", "b", "c"], &["a", "x"]);
        assert_eq!(
            report,
            "the command produced other events than expected (3 expected, 2 actual)\n\
             \x20   [0] \"a\"\n\
             \x20 - [1] \"b\"\n\
             \x20 + [1] \"x\"\n\
             \x20 - [2] \"c\"\n\
             \x20 (- expected, + actual)"
        );
    }
}
