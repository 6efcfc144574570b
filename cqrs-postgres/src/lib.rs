//! PostgreSQL storage for `cqrs-core`.
//!
//! This crate will hold the PostgreSQL [`EventStore`](cqrs_core::EventStore):
//! events keyed by stream and version so the database rejects a second writer,
//! a gap-safe global log, snapshots, projection checkpoints and the projection
//! runner. Until then, use [`cqrs_core::InMemoryEventStore`], which keeps the
//! same promises.
