//! Several projections in one process, with one shutdown and one view of
//! their health: what a service runs instead of spawning, watching and
//! stopping each runner itself (a runner left running at shutdown keeps its
//! lease, and the next start waits for it to lapse).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use cqrskit_core::Projector;
use sqlx::PgConnection;
use tokio::sync::watch;

use super::{Lag, LeaseHolder, ProjectionRunner};
use crate::Error;

/// Runs a set of projection runners together: all start at once, each in its
/// own task; one shutdown stops them all, and each releases its lease.
///
/// A runner that ends with an error (a projection stopped at a poison event,
/// a subscription that needs a rebuild) is reported at error level and the
/// others go on; [`run`](Self::run) returns every such failure once the
/// shutdown completes. [`status`](Self::status) gives each projection's lag
/// and lease holder, for a health endpoint, while they run.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use cqrskit::postgres::{PostgresEventStore, ProjectionDaemon, ProjectionRunner};
/// # async fn example<A, B>(store: PostgresEventStore, a: Arc<A>, b: Arc<B>) -> Result<(), Box<dyn std::error::Error>>
/// # where
/// #     A: cqrskit::Projector<cqrskit::postgres::sqlx::PgConnection> + 'static,
/// #     B: cqrskit::Projector<cqrskit::postgres::sqlx::PgConnection> + 'static,
/// # {
/// let daemon = ProjectionDaemon::new()
///     .with(ProjectionRunner::new(store.clone(), a))
///     .with(ProjectionRunner::new(store, b));
/// daemon.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ProjectionDaemon {
    members: Vec<Arc<dyn Member>>,
}

/// What [`ProjectionDaemon::status`] reports of one projection.
#[derive(Debug)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// How far behind it is, or why that could not be read.
    pub lag: Result<Lag, Error>,
    /// Who holds its lease now (this process's runner or another's).
    pub holder: Result<Option<LeaseHolder>, Error>,
}

impl ProjectionDaemon {
    /// An empty daemon.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a runner (configured as it would run alone: options, owner).
    #[must_use]
    pub fn with<P>(mut self, runner: ProjectionRunner<P>) -> Self
    where
        P: Projector<PgConnection> + ?Sized + 'static,
    {
        self.members.push(Arc::new(runner));
        self
    }

    /// The names of its projections, in the order they were added.
    pub fn projections(&self) -> Vec<&str> {
        self.members.iter().map(|member| member.name()).collect()
    }

    /// Runs every runner until `shutdown` completes, then stops them all and
    /// waits until each has released its lease.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateProjection`] before anything starts;
    /// [`Error::Failed`] when runners ended early (see the type docs);
    /// [`Error::Aborted`] when a runner's task panicked.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut names: Vec<&str> = self.projections();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::DuplicateProjection(pair[0].to_owned()));
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let (member, mut stopped) = (member.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = member
                    .run(Box::pin(async move {
                        // A dropped sender also means stop.
                        let _ = stopped.wait_for(|stop| *stop).await;
                    }))
                    .await;
                if let Err(error) = &outcome {
                    tracing::error!(projection = member.name(), %error, "projection runner ended; the others go on");
                }
                outcome
            }));
        }
        shutdown.await;
        let _ = stop.send(true);
        let mut failures = Vec::new();
        for (member, task) in self.members.iter().zip(tasks) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push((member.name().to_owned(), error)),
                Err(error) => {
                    return Err(Error::Aborted {
                        projection: member.name().to_owned(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Failed(failures))
        }
    }

    /// Each projection's lag and lease holder, read now.
    pub async fn status(&self) -> Vec<ProjectionStatus> {
        let mut statuses = Vec::with_capacity(self.members.len());
        for member in &self.members {
            statuses.push(ProjectionStatus {
                name: member.name().to_owned(),
                lag: member.lag().await,
                holder: member.holder().await,
            });
        }
        statuses
    }
}

impl std::fmt::Debug for ProjectionDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionDaemon")
            .field("projections", &self.projections())
            .finish()
    }
}

/// A runner, whatever its projector's type.
#[async_trait]
trait Member: Send + Sync {
    fn name(&self) -> &str;
    async fn run(
        &self,
        shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Result<(), Error>;
    async fn lag(&self) -> Result<Lag, Error>;
    async fn holder(&self) -> Result<Option<LeaseHolder>, Error>;
}

#[async_trait]
impl<P> Member for ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    fn name(&self) -> &str {
        ProjectionRunner::name(self)
    }

    async fn run(
        &self,
        shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Result<(), Error> {
        ProjectionRunner::run(self, shutdown).await
    }

    async fn lag(&self) -> Result<Lag, Error> {
        ProjectionRunner::lag(self).await
    }

    async fn holder(&self) -> Result<Option<LeaseHolder>, Error> {
        self.lease_holder().await
    }
}
