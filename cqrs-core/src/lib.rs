//! The model of [cqrskit](https://docs.rs/cqrskit): aggregates, commands,
//! events, projections, the event store trait and an in-memory store.
//!
//! Applications depend on the `cqrskit` crate, which re-exports everything
//! here together with the macros and, behind a feature, the PostgreSQL store;
//! this crate exists so that the stores and the macros can build on the model
//! without depending on each other.
//!
//! # Modules at a glance
//!
//! - events: [`DomainEvent`], [`EventEnvelope`], [`Metadata`], [`codec`];
//! - the write side: [`Aggregate`], [`Command`], [`CommandPipeline`],
//!   [`RetryPolicy`], [`SnapshotPolicy`];
//! - storage: [`EventStore`] (with [`SnapshotStore`], [`EventQueries`] and
//!   [`StoreLayer`] beside it), [`ExpectedVersion`], [`Position`],
//!   [`LogFilter`], [`InMemoryEventStore`];
//! - the read side: [`Projector`], [`catch_up`], [`Query`], [`QueryHandler`],
//!   and read models without SQL in [`document`] and [`window`];
//! - messages from outside, applied once: [`inbox`] ([`inbox::Inbox`],
//!   [`inbox::DeadLetters`]);
//! - commands scheduled for later: [`deadline`] ([`deadline::DeadlineRunner`],
//!   [`deadline::ManualClock`]);
//! - the macros' machinery: [`dispatch`];
//! - tests of domain logic: [`testing::AggregateFixture`];
//! - application code that panics, as an error: [`unwind::caught`];
//! - metrics through the `metrics` facade: [`telemetry`].

mod aggregate;
mod backoff;
pub mod codec;
pub mod command_id;
pub mod deadline;
pub mod dispatch;
pub mod document;
mod error;
mod event;
mod exact_json;
pub mod host;
mod in_memory_runner;
pub mod inbox;
pub mod limits;
mod memory;
mod metadata;
mod pipeline;
mod policy;
mod position;
mod projector;
mod query;
mod store;
mod stream;
pub mod telemetry;
pub mod testing;
pub mod unwind;
pub mod window;

pub use aggregate::{Aggregate, Command};
pub use backoff::Backoff;
pub use error::{
    BoxError, CommandError, Conflict, DecodeError, EncodeError, ErrorKind, PayloadError, StoreError,
};
pub use event::{DomainEvent, EventEnvelope, NewEvent, StoredEvent};
pub use in_memory_runner::InMemoryRunner;
pub use memory::InMemoryEventStore;
pub use metadata::Metadata;
pub use pipeline::state_cache::DEFAULT_CAPACITY as DEFAULT_STATE_CACHE;
pub use pipeline::{CommandOutcome, CommandPipeline, Loaded};
pub use policy::{PipelineOptions, RetryPolicy, SnapshotPolicy};
pub use position::{ParsePositionError, Position};
pub use projector::{Detached, ProjectionError, Projector, catch_up};
pub use query::{Query, QueryHandler};
pub use store::{
    AppendResult, Committed, EventQueries, EventStore, LogFilter, ReplayEvent, ReplayRequest,
    ReplaySink, Snapshot, SnapshotStore, StoreLayer,
};
pub use stream::{ExpectedVersion, SLICES, StreamId};

/// Re-exported so that users and generated code need no direct dependency.
pub use async_trait::async_trait;

/// The crates whose types the envelopes, snapshots and deadlines carry
/// (`DateTime<Utc>`, `Uuid`), re-exported so that code writing events or
/// deadlines by hand needs no dependency lines of its own.
pub use chrono;
/// The type a stored event's payload is kept as ([`StoredEvent::payload`]).
pub use serde_json::value::RawValue;
pub use uuid;

/// Paths used by code the derive macros generate. Not part of the public API:
/// hidden so nobody depends on it, public because generated code in user
/// crates must reach it.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::future::{Future, ready};
    pub use std::option::Option;
    pub use std::result::Result;
    pub use std::vec::Vec;
}
