//! What a host runs: long-running services, and steps that prepare the
//! ground before any of them starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Position;

pub use crate::BoxError;

/// The signal a hosted service stops on: it completes when the host shuts
/// down.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// When a service stops, relative to the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// A service that takes work in from outside (an HTTP server, a
    /// consumer of a broker): stopped first, and waited for, so that what
    /// it accepted is finished while the rest still runs (a request that
    /// waits for a projection to catch up gets its answer).
    Ingress,
    /// A service that works off what is stored (a projection, a process
    /// manager, a deadline runner, a relay): stopped once every ingress
    /// has stopped.
    #[default]
    Worker,
}

/// What a hosted service says of itself for the host's health view.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Whether it does its work now (a projection that stopped at a poison
    /// event, a database it cannot reach: not healthy).
    pub healthy: bool,
    /// What an operator reads: a projection's lag and lease holder, say.
    pub detail: String,
}

impl Report {
    /// Healthy, with `detail`.
    pub fn healthy(detail: impl Into<String>) -> Self {
        Self {
            healthy: true,
            detail: detail.into(),
        }
    }

    /// Not healthy, with why.
    pub fn unhealthy(detail: impl Into<String>) -> Self {
        Self {
            healthy: false,
            detail: detail.into(),
        }
    }
}

/// A long-running part of an application that a [`Host`](super::Host)
/// runs: a projection runner, a partitioned projection, a deadline runner,
/// a broker's consumer, an HTTP server. The crates implement it for their
/// runners; an application implements it for a service of its own.
#[async_trait]
pub trait Hosted: Send + Sync + 'static {
    /// Its name, unique in the host: in logs, the health view, and to
    /// [`wait_for`](super::HostHandle::wait_for) a projection.
    fn name(&self) -> &str;

    /// When it stops (see [`Stage`]).
    fn stage(&self) -> Stage {
        Stage::Worker
    }

    /// What must be done before any service starts (its tables, its
    /// broker's stream). Services are prepared one at a time, in the order
    /// they were added, after the host's [`Prepare`] steps.
    ///
    /// # Errors
    ///
    /// Whatever stops it from running; the host then starts nothing.
    async fn prepare(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs until `shutdown` completes, then finishes what it holds
    /// (commits its batch, releases its lease) and returns.
    ///
    /// # Errors
    ///
    /// When it ended on its own with a failure (the host reports it, and
    /// the others go on).
    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError>;

    /// How it is doing, for the health view.
    async fn report(&self) -> Report {
        Report::healthy("")
    }

    /// For a projection: waits until it has applied the log up to
    /// `position` (read-your-writes), at most `timeout`; `Some(Ok(false))`
    /// when it has not by then. `None` for a service that is not a
    /// projection.
    async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Option<Result<bool, BoxError>> {
        let _ = (position, timeout);
        None
    }
}

#[async_trait]
impl<T: Hosted + ?Sized> Hosted for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn stage(&self) -> Stage {
        (**self).stage()
    }

    async fn prepare(&self) -> Result<(), BoxError> {
        (**self).prepare().await
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        (**self).run(shutdown).await
    }

    async fn report(&self) -> Report {
        (**self).report().await
    }

    async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Option<Result<bool, BoxError>> {
        (**self).wait_for(position, timeout).await
    }
}

/// A step that prepares the ground before any service starts: a store's
/// migrations, say. Steps run one at a time, in the order they were added.
#[async_trait]
pub trait Prepare: Send + Sync + 'static {
    /// What it does, for logs and errors (`migrations`).
    fn name(&self) -> &str;

    /// Does it.
    ///
    /// # Errors
    ///
    /// Whatever stops the application from starting.
    async fn prepare(&self) -> Result<(), BoxError>;
}
