//! A consumer in an application's [`Host`](cqrskit_core::host::Host): it
//! takes work in from the broker, so the host stops it first, and what it
//! handled is committed before the projections stop.

use async_trait::async_trait;
use cqrskit_core::host::{BoxError, Hosted, Report, Shutdown, Stage};
use cqrskit_core::inbox::DeadLetters;

use super::{Consumer, Handler};

#[async_trait]
impl<I, H> Hosted for Consumer<I, H>
where
    I: DeadLetters + Send + Sync + 'static,
    H: Handler<I::Connection> + Send + Sync + 'static,
{
    /// Its durable consumer's name.
    fn name(&self) -> &str {
        &self.options.durable
    }

    fn stage(&self) -> Stage {
        Stage::Ingress
    }

    /// Its durable JetStream consumer, before anything runs.
    async fn prepare(&self) -> Result<(), BoxError> {
        self.setup().await?;
        Ok(())
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        Ok(Consumer::run(self, shutdown).await?)
    }

    /// Its open dead letters.
    async fn report(&self) -> Report {
        match self.dead_letters().await {
            Ok(parked) if parked.is_empty() => Report::healthy("no dead letters"),
            Ok(parked) => Report::healthy(format!("{} dead letters", parked.len())),
            Err(error) => Report::unhealthy(format!("inbox unavailable: {error}")),
        }
    }
}

#[async_trait]
impl<I, H> Hosted for super::PartitionedConsumer<I, H>
where
    I: DeadLetters + cqrskit_core::inbox::PartitionLeases + Send + Sync + 'static,
    H: Handler<I::Connection> + Send + Sync + 'static,
{
    /// Its durable consumer's name.
    fn name(&self) -> &str {
        super::PartitionedConsumer::name(self)
    }

    fn stage(&self) -> Stage {
        Stage::Ingress
    }

    /// Checks the stream and records the split, refusing another
    /// partition count, before anything runs.
    async fn prepare(&self) -> Result<(), BoxError> {
        self.setup().await?;
        Ok(())
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        Ok(super::PartitionedConsumer::run(self, shutdown).await?)
    }

    /// The partitions it reads now.
    async fn report(&self) -> Report {
        let held = self.held();
        Report::healthy(format!(
            "reads {} of {} partitions: {held:?}",
            held.len(),
            self.partitions().len()
        ))
    }
}
