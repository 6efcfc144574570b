//! Projections: read models kept up to date from the global log, exactly once
//! for read models in the same database.

pub(crate) mod checkpoint;
mod daemon;
pub(crate) mod dead_letter;
mod layout;
mod lease;
mod partitioned;
pub(crate) mod pending;
mod policy;
mod runner;

pub use daemon::{ProjectionDaemon, ProjectionStatus};
pub use dead_letter::DeadLetter;
pub use lease::LeaseHolder;
pub use partitioned::PartitionedRunner;
pub use policy::{FailurePolicy, OnExhausted, RunnerOptions};
pub use runner::{Lag, ProjectionRunner, ReplayOutcome, Request};
