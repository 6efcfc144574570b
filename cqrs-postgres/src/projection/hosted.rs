//! Projections in an application's [`Host`](cqrskit_core::host::Host): a
//! runner, or a partitioned projection, is a hosted service whose health is
//! its lag and lease, and on which a request waits to read its own write;
//! the store's migrations are a step that runs before anything starts.

use std::time::Duration;

use async_trait::async_trait;
use cqrskit_core::Position;
use cqrskit_core::Projector;
use cqrskit_core::host::{BoxError, Hosted, Prepare, Report, Shutdown};
use sqlx::PgConnection;

use super::{Lag, PartitionedRunner, ProjectionRunner};
use crate::{Error, PostgresEventStore};

#[async_trait]
impl<P> Hosted for ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    fn name(&self) -> &str {
        ProjectionRunner::name(self)
    }

    /// The projector's tables, before any request reads them.
    async fn prepare(&self) -> Result<(), BoxError> {
        Ok(self.setup().await?)
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        Ok(ProjectionRunner::run(self, shutdown).await?)
    }

    /// Its lag and who holds its lease; unhealthy when its lag cannot be
    /// read or it waits for a rebuild.
    async fn report(&self) -> Report {
        let holder = match self.lease_holder().await {
            Ok(Some(holder)) if holder.owner == self.owner() => "held here".to_owned(),
            Ok(Some(holder)) => format!("held by {}", holder.owner),
            Ok(None) => "not held".to_owned(),
            Err(error) => format!("lease unknown: {error}"),
        };
        report_of(self.lag().await, &holder)
    }

    async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Option<Result<bool, BoxError>> {
        Some(
            ProjectionRunner::wait_for(self, position, timeout)
                .await
                .map_err(BoxError::from),
        )
    }
}

#[async_trait]
impl<P> Hosted for PartitionedRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    fn name(&self) -> &str {
        PartitionedRunner::name(self)
    }

    async fn prepare(&self) -> Result<(), BoxError> {
        Ok(self.setup().await?)
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        Ok(PartitionedRunner::run(self, shutdown).await?)
    }

    /// Its partitions' lag in events, summed, the oldest's age among them,
    /// and how many partitions this instance holds.
    async fn report(&self) -> Report {
        let (mut events, mut behind, mut rebuild) = (0, Duration::ZERO, false);
        for partition in self.partitions() {
            match partition.lag().await {
                Ok(lag) => {
                    events += lag.events;
                    behind = behind.max(lag.behind);
                    rebuild |= lag.needs_rebuild;
                }
                Err(error) => {
                    return Report::unhealthy(format!("{}: {error}", partition.name()));
                }
            }
        }
        let detail = format!(
            "{events} events behind ({:.1} s), {} of {} partitions held here",
            behind.as_secs_f64(),
            self.held(),
            self.partitions().len()
        );
        if rebuild {
            Report::unhealthy(format!("{detail}; needs a rebuild"))
        } else {
            Report::healthy(detail)
        }
    }

    /// Waits until every partition has applied the log up to `position`,
    /// at most `timeout` in all.
    async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Option<Result<bool, BoxError>> {
        let until = tokio::time::Instant::now() + timeout;
        let every = async {
            for partition in self.partitions() {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                match ProjectionRunner::wait_for(partition, position, left).await {
                    Ok(true) => {}
                    other => return other.map_err(BoxError::from),
                }
            }
            Ok(true)
        };
        // A partition asked after the deadline still looks once: the bound
        // holds for the whole wait.
        Some(
            tokio::time::timeout_at(until, every)
                .await
                .unwrap_or(Ok(false)),
        )
    }
}

/// A projection's report from its lag and lease.
fn report_of(lag: Result<Lag, Error>, holder: &str) -> Report {
    match lag {
        Ok(lag) if lag.needs_rebuild => Report::unhealthy(format!(
            "its subscription changed and it waits for a rebuild; lease {holder}"
        )),
        Ok(lag) => Report::healthy(format!(
            "{} events behind ({:.1} s); lease {holder}",
            lag.events,
            lag.behind.as_secs_f64()
        )),
        Err(error) => Report::unhealthy(format!("lag unknown: {error}")),
    }
}

#[async_trait]
impl Prepare for PostgresEventStore {
    fn name(&self) -> &str {
        "migrations"
    }

    /// Applies the store's migrations (see
    /// [`migrate`](PostgresEventStore::migrate)).
    async fn prepare(&self) -> Result<(), BoxError> {
        Ok(self.migrate().await?)
    }
}
