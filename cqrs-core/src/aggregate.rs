//! Aggregates and commands: the write side's consistency boundary.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::DomainEvent;

/// An intent addressed to one aggregate instance, usually an enum with one
/// variant per thing the aggregate can be asked to do.
pub trait Command: Send + Sync + 'static {
    /// A short name for the command's kind (the variant name), used in traces
    /// and error reports.
    fn command_type(&self) -> &'static str;

    /// Whether this command only ever starts a new aggregate (open an
    /// account, place an order, register a user): then the pipeline, when
    /// it holds no cached state for the aggregate, decides it on the
    /// `Default` state without loading and appends expecting no stream, so
    /// creating an aggregate is one round trip instead of two (a load that
    /// finds nothing, then the append).
    ///
    /// It never changes an outcome. If the stream exists after all, the
    /// append is refused and the command is decided again on the state
    /// loaded from the store, so the caller sees what the aggregate says
    /// about a second creation (typically a rejection such as "already
    /// open"), or the first execution's outcome for a repeated command id.
    /// A rejection or an empty decision on the default state is decided
    /// again on the loaded state too. The cost of a wrong answer is that
    /// refused append: answer `true` only for commands that are almost
    /// always sent to a new aggregate. Defaults to `false`;
    /// `#[derive(Command)]` answers `true` for variants marked
    /// `#[command(creates)]`.
    fn creates_aggregate(&self) -> bool {
        false
    }
}

/// An aggregate: decides which events a command produces, and evolves its
/// state by applying events.
///
/// `handle` must not change state; only `apply` does, so that replaying the
/// stored events always rebuilds the same state. `apply` cannot fail: an event
/// is a fact that already happened.
///
/// The state is `Serialize + DeserializeOwned` so it can be snapshotted, and
/// `Default` is the state before the first event.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type, stored in every event's stream id. Keep it stable.
    const TYPE: &'static str;

    /// The schema version of the serialized state. Raise it when the state's
    /// shape changes: snapshots of other versions are then ignored and the
    /// state is rebuilt from the events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The commands this aggregate handles.
    type Command: Command;
    /// The events it records.
    type Event: DomainEvent;
    /// Its domain error: why a command is rejected.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Services the decision may consult (a clock, a price list, an id
    /// generator), injected into the pipeline once. Use `()` for none.
    type Services: Send + Sync + 'static;

    /// Decides: the events `command` produces in the current state, or why it
    /// is rejected. An empty list means "nothing to do" and stores nothing.
    fn handle(
        &self,
        command: &Self::Command,
        services: &Self::Services,
    ) -> impl Future<Output = Result<Vec<Self::Event>, Self::Error>> + Send;

    /// Evolves the state by one event.
    fn apply(&mut self, event: &Self::Event);
}
