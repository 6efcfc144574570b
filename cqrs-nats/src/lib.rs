//! Integration events between services over NATS JetStream, for `cqrskit`.
//!
//! - **Publishing**: a [`Relay`] tails the store's global log like a
//!   projection, run by the store's projection runner (gap-safe, from its own checkpoint, one active
//!   instance per name) and publishes the events a [`Publication`] selects,
//!   mapped to their public shape, as CloudEvents. What JetStream stores is
//!   in log order whatever fails (each message states the stream sequence
//!   it must follow), and a relay that crashes between JetStream's
//!   acknowledgement and its checkpoint reads where its stream stands
//!   instead of publishing again: nothing is stored twice or out of order.
//! - **The wire format**: [`CloudEvent`], CloudEvents 1.0 in structured
//!   mode (the JSON event format) or binary mode (`ce-` headers).
//! - **Consuming**: a [`Consumer`] runs a [`Handler`] for each message of a
//!   durable JetStream consumer, its writes committed together with an
//!   inbox record (the store's [`Inbox`](cqrskit_core::inbox::Inbox); on
//!   PostgreSQL, `PostgresInbox`) before the message is acknowledged, so a redelivered
//!   message is recognised and not handled twice; failures are retried with
//!   a growing delay, then dead-lettered.
//!
//! This crate knows no store: it reads the log through the store's runner
//! and records messages through the model's inbox traits. Depend on
//! `cqrskit` with the `nats` feature and use it as `cqrskit::nats`.
//! The guide is `docs/integration.md`.

pub mod cloudevent;
mod consumer;
mod error;
mod publication;
mod relay;
mod route;
mod silence;
pub mod telemetry;

pub use async_nats;
pub use cloudevent::{CloudEvent, CloudEventError, ContentMode};
pub use consumer::{
    Consumer, ConsumerLag, ConsumerOptions, Handler, Observed, Outcome, OutcomeHook,
    PartitionedConsumer, Unacknowledged, consumer_lag,
};
pub use error::Error;
pub use publication::{Outgoing, Publication};
pub use relay::{POSITION_HEADER, RELAY_HEADER, Relay, RelayOptions, StreamSpec};
pub use route::{ConsumerPartition, MAX_PARTITIONS, ROUTE_BITS, route_tokens};
