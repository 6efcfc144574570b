//! PostgreSQL storage of [cqrskit](https://docs.rs/cqrskit), re-exported there
//! as `cqrskit::postgres` behind the `postgres` feature: an
//! [`EventStore`](cqrskit_core::EventStore)
//! with the same semantics as the in-memory one, proven against a real database
//! by the shared conformance suite.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use cqrskit::postgres::PostgresEventStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1/postgres")
//!     .await?
//!     .with_schema("bank")?;
//! store.migrate().await?; // creates schema `bank` and its tables, once
//! let store: Arc<dyn cqrskit::EventStore> = Arc::new(store);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Optimistic concurrency in the database.** Events are keyed by (aggregate
//!   type, aggregate id, version). An append checks the stream's version and
//!   inserts its batch in one statement; of two writers at the same version the
//!   primary key lets one commit and the other gets
//!   [`StoreError::Conflict`](cqrskit_core::StoreError::Conflict) with expected and
//!   actual versions. A batch is one statement, so it is stored whole or not at
//!   all, even if the connection drops mid-way.
//! - **Idempotent re-appends.** A batch whose event ids are stored, with the
//!   same content, succeeds again and reports the original places; the same ids
//!   with other content are refused.
//! - **A gap-safe global log.** Every event is tagged with the id of the
//!   transaction that wrote it, and the log is ordered by (tag, position).
//!   Appends announce themselves before they take a transaction id, and a
//!   reader only reads below the oldest append still in flight: everything
//!   below it has committed or rolled back, so no event can ever appear behind
//!   a reader's checkpoint, while transactions that append nothing (other
//!   schemas, other tables, reports) hold back nobody. An append left open
//!   holds readers back until it ends;
//!   [`PostgresEventStore::oldest_open_append`] names the session.
//!
//! The schema and the queries behind each index are documented in
//! `docs/postgres.md`.

pub mod admin;
mod consumer_partitions;
mod database;
mod deadlines;
mod documents;
mod error;
pub mod failure;
mod horizon;
mod inbox;
mod inline;
mod migrate;
mod notify;
mod partition;
mod projection;
mod row;
mod schema_name;
mod statements;
mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod windows;

pub use deadlines::PostgresDeadlines;
pub use documents::PgDocuments;
pub use error::{Error, Result, SchemaBehind, StoppedAt};
pub use inbox::PostgresInbox;
pub use inline::InlineProjections;
pub use migrate::{MigrationName, SchemaStatus};
pub use partition::Partition;
pub use projection::{
    DeadLetter, FailurePolicy, Lag, LeaseHolder, OnExhausted, PartitionedRunner, ProjectionRunner,
    ReplayOutcome, Request, RunnerOptions,
};
pub use schema_name::SchemaName;
pub use store::{CONNECT_TIMEOUT, GroupCommit, OldestAppend, PostgresEventStore, StoreOptions};
pub use windows::PgWindows;

/// Re-exported so applications need not depend on sqlx to build a pool.
pub use sqlx::{self, PgPool};
