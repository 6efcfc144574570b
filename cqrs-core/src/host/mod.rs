//! The application host: one place where a service registers everything
//! that runs beside its requests (projection runners, partitioned
//! projections, process managers, deadline runners, relays, consumers, an
//! HTTP server) and runs it all with one shutdown.
//!
//! [`Host::run`] prepares the ground first (the store's migrations, then
//! each service's tables or streams, one at a time, in the order they were
//! added), starts nothing if that fails, then runs every service in a task
//! of its own. When the shutdown signal completes, the services that take
//! work in ([`Stage::Ingress`]: the HTTP server, consumers) stop first and
//! finish what they accepted, while projections still run, so a request
//! waiting to read its own write gets its answer; then the workers stop,
//! each committing its batch and releasing its lease; a stage that takes
//! longer than the grace period ([`Host::shutdown_grace`]) is abandoned.
//! A service that fails or panics is marked failed at once; the others go
//! on. A [`HostHandle`]
//! gives the health of every service and read-your-writes on any hosted
//! projection, partitioned or not.
//!
//! ```
//! use std::time::Duration;
//! use cqrskit::host::{BoxError, Host, Hosted, Report, Shutdown};
//!
//! /// A service of the application's own: here, a heartbeat.
//! struct Heartbeat;
//!
//! #[cqrskit::async_trait]
//! impl Hosted for Heartbeat {
//!     fn name(&self) -> &str {
//!         "heartbeat"
//!     }
//!
//!     async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
//!         let mut shutdown = shutdown;
//!         loop {
//!             tokio::select! {
//!                 _ = &mut shutdown => return Ok(()),
//!                 _ = tokio::time::sleep(Duration::from_millis(10)) => {}
//!             }
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let host = Host::new().service(Heartbeat);
//! let handle = host.handle();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(host.run(async move { let _ = stopped.await; }));
//! tokio::time::sleep(Duration::from_millis(50)).await;
//! assert!(handle.health().await.healthy);
//! stop.send(()).unwrap();
//! running.await.unwrap().expect("stopped cleanly");
//! # });
//! ```

mod error;
mod handle;
mod hosted;
mod signal;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

pub use self::error::HostError;
pub use self::handle::{Health, HostHandle, ServiceHealth, ServiceState};
pub use self::hosted::{BoxError, Hosted, Prepare, Report, Shutdown, Stage};
pub use self::signal::shutdown_signal;

use self::handle::{Entry, Registry};

/// A service's task.
type Running = tokio::task::JoinHandle<Result<(), BoxError>>;

/// Runs an application's services together, with one shutdown (see the
/// [module docs](self)).
pub struct Host {
    steps: Vec<Box<dyn Prepare>>,
    registry: Registry,
    grace: Duration,
}

impl Default for Host {
    /// Nothing to run yet; 30 s for each stage to stop.
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            registry: Registry::default(),
            grace: Duration::from_secs(30),
        }
    }
}

impl Host {
    /// A host with nothing to run yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long each stage (the ingress, then the workers) may take to stop
    /// once told to (default 30 s): a service still running then (an HTTP
    /// connection that never closes, a handler that hangs) is abandoned and
    /// reported as failed, and the shutdown goes on.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Adds a step that runs before any service starts (a store's
    /// migrations: `cqrskit::postgres::PostgresEventStore` is one).
    #[must_use]
    pub fn prepare(mut self, step: impl Prepare) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    /// Adds a service. Pass an `Arc` to keep using it (a projection
    /// runner's lag, say) while the host runs it.
    #[must_use]
    pub fn service(self, service: impl Hosted) -> Self {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(Entry {
                service: Arc::new(service),
                state: Mutex::new(ServiceState::Starting),
            }));
        self
    }

    /// A handle on the host, for health and read-your-writes; it sees the
    /// services added after it was taken too.
    pub fn handle(&self) -> HostHandle {
        HostHandle {
            registry: self.registry.clone(),
        }
    }

    /// Prepares, runs every service until `shutdown` completes, then stops
    /// them, ingress first (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`HostError::DuplicateName`] or [`HostError::Prepare`] before
    /// anything starts; [`HostError::Failed`] when services ended on their
    /// own with a failure (each is logged at error level when it happens,
    /// and the others go on); [`HostError::Panicked`] when a service's task
    /// panicked.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), HostError> {
        let entries = self.handle().entries();
        let mut names: Vec<&str> = entries.iter().map(|entry| entry.service.name()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(HostError::DuplicateName(pair[0].to_owned()));
        }
        for step in &self.steps {
            tracing::info!(step = step.name(), "preparing");
            step.prepare().await.map_err(|source| HostError::Prepare {
                step: step.name().to_owned(),
                source,
            })?;
        }
        for entry in &entries {
            let name = entry.service.name();
            entry.service.prepare().await.map_err(|source| {
                entry.set(ServiceState::Failed(source.to_string()));
                HostError::Prepare {
                    step: name.to_owned(),
                    source,
                }
            })?;
        }
        let (stop_ingress, ingress_stopping) = watch::channel(false);
        let (stop_workers, workers_stopping) = watch::channel(false);
        let mut ingress = Vec::new();
        let mut workers = Vec::new();
        for entry in &entries {
            // Asked once: where the task is filed decides when it stops.
            let (stopping, stage) = match entry.service.stage() {
                Stage::Ingress => (ingress_stopping.clone(), &mut ingress),
                Stage::Worker => (workers_stopping.clone(), &mut workers),
            };
            stage.push((
                entry.clone(),
                tokio::spawn(run_one(entry.clone(), stopping)),
            ));
        }
        tracing::info!(services = entries.len(), "host running");
        shutdown.await;
        tracing::info!("host stopping: ingress first");
        let mut failures = Vec::new();
        let mut panicked = None;
        let _ = stop_ingress.send(true);
        self.stop(ingress, &mut failures, &mut panicked).await;
        let _ = stop_workers.send(true);
        self.stop(workers, &mut failures, &mut panicked).await;
        tracing::info!("host stopped");
        if let Some(error) = panicked {
            return Err(error);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(HostError::Failed(failures))
        }
    }

    /// Waits for the tasks of one stage, told to stop, at most the grace
    /// period; abandons those still running then.
    async fn stop(
        &self,
        tasks: Vec<(Arc<Entry>, Running)>,
        failures: &mut Vec<(String, BoxError)>,
        panicked: &mut Option<HostError>,
    ) {
        let until = tokio::time::Instant::now() + self.grace;
        for (entry, mut task) in tasks {
            match tokio::time::timeout_at(until, &mut task).await {
                Ok(joined) => collect(&entry, joined, failures, panicked),
                Err(_) => {
                    task.abort();
                    let reason = format!("did not stop within {:?}; abandoned", self.grace);
                    tracing::error!(service = entry.service.name(), "{reason}");
                    entry.set(ServiceState::Failed(reason.clone()));
                    failures.push((entry.service.name().to_owned(), reason.into()));
                }
            }
        }
    }
}

/// Runs one service until its stage's signal, and records how it ended:
/// at once, a panic included (the service runs in a task of its own, so
/// the health view shows it failed while the host runs on).
async fn run_one(entry: Arc<Entry>, stopping: watch::Receiver<bool>) -> Result<(), BoxError> {
    entry.set(ServiceState::Running);
    let mut signal = stopping.clone();
    let shutdown: Shutdown = Box::pin(async move {
        // A dropped sender means stop too.
        let _ = signal.wait_for(|stop| *stop).await;
    });
    let service = entry.service.clone();
    let outcome = match tokio::spawn(async move { service.run(shutdown).await }).await {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("panicked: {panic}").into()),
    };
    match &outcome {
        Ok(()) => {
            if !*stopping.borrow() {
                tracing::warn!(
                    service = entry.service.name(),
                    "service ended before the host's shutdown"
                );
            }
            entry.set(ServiceState::Stopped);
        }
        Err(error) => {
            tracing::error!(service = entry.service.name(), %error, "service ended with a failure; the others go on");
            entry.set(ServiceState::Failed(error.to_string()));
        }
    }
    outcome
}

/// Adds how a service's task ended to what the host reports.
fn collect(
    entry: &Entry,
    joined: Result<Result<(), BoxError>, tokio::task::JoinError>,
    failures: &mut Vec<(String, BoxError)>,
    panicked: &mut Option<HostError>,
) {
    let name = entry.service.name().to_owned();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(error)) => failures.push((name, error)),
        Err(error) => {
            entry.set(ServiceState::Failed(format!("panicked: {error}")));
            panicked.get_or_insert(HostError::Panicked {
                service: name,
                reason: error.to_string(),
            });
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field(
                "steps",
                &self
                    .steps
                    .iter()
                    .map(|step| step.name())
                    .collect::<Vec<_>>(),
            )
            .field("services", &self.handle().services())
            .finish()
    }
}
