//! Projections: read models kept up to date from the global log, exactly once
//! for read models in the same database.

pub(crate) mod dead_letter;
mod hosted;
mod layout;
mod partitioned;
pub(crate) mod pending;
mod policy;
pub(crate) mod projection_row;
mod runner;

pub use dead_letter::DeadLetter;
pub use partitioned::PartitionedRunner;
pub use policy::{FailurePolicy, OnExhausted, RunnerOptions};
pub use projection_row::LeaseHolder;
pub use runner::{Lag, ProjectionRunner, ReplayOutcome, Request};
