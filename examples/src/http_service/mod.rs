//! The bank account behind a small REST API on axum, run as
//! `cargo run --example http_service` (see `docs/operations.md`).
//!
//! - `POST /accounts/{id}` (`{"owner": ...}`), `POST
//!   /accounts/{id}/deposits` and `/withdrawals` (`{"amount": ...}`): a
//!   command; the answer carries the stream version and the log position
//!   of its last event;
//! - `GET /accounts/{id}`: the aggregate's state (`?at_version=` or `?at=`
//!   for its past), `GET /accounts/{id}/events`: its history;
//! - `GET /balances/{id}?after=<position>`: the read model, waiting (at most
//!   `wait_ms`, default 2000) until it has applied the command at
//!   `position`: read-your-writes;
//! - `GET /health`: the database and the projection's lag; `GET /metrics`:
//!   Prometheus' text format.
//!
//! Errors are JSON (`{"error": kind, "message": ...}`) with the status of
//! [`ApiError`]. On shutdown the server stops taking requests, finishes
//! those in flight, and the projection runner commits its batch and gives
//! its lease up.

mod error;
mod routes;

use std::future::Future;
use std::sync::Arc;

use cqrskit::CommandPipeline;
use cqrskit::postgres::{
    FailurePolicy, OnExhausted, PostgresEventStore, ProjectionRunner, RunnerOptions,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;

use crate::bank_account::BankAccount;
use crate::bank_account::balances::AccountBalances;

/// The options the balances projection runs with: each of its rows is one
/// account's, so an account whose event the table cannot take (written by
/// other code than the handlers, which refuse such amounts) has its events
/// parked behind that one ([`OnExhausted::ParkStream`]), its balance left
/// as it was, while every other account's balance stays current. A
/// projection combining accounts (a total) would stop instead.
pub fn balances_options() -> RunnerOptions {
    RunnerOptions::default().failure(FailurePolicy::default().on_exhausted(OnExhausted::ParkStream))
}

/// What the handlers share.
pub struct Service {
    store: PostgresEventStore,
    accounts: CommandPipeline<BankAccount>,
    balances: AccountBalances,
    runner: Arc<ProjectionRunner<AccountBalances>>,
    metrics: Option<PrometheusHandle>,
}

impl Service {
    /// The service over `store`, its balances projection run with `options`
    /// ([`balances_options`] for the recommended ones), reporting `metrics`
    /// at `/metrics` when given (the handle of the installed Prometheus
    /// recorder).
    pub fn new(
        store: PostgresEventStore,
        options: RunnerOptions,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let balances = AccountBalances::new(&store);
        let runner =
            ProjectionRunner::new(store.clone(), Arc::new(balances.clone())).with_options(options);
        Self {
            accounts: CommandPipeline::new(Arc::new(store.clone()), ()),
            balances,
            runner: Arc::new(runner),
            store,
            metrics,
        }
    }
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// The projection runner stopped with an error.
    #[error("projection runner: {0}")]
    Runner(#[from] cqrskit::postgres::Error),
}

/// Serves `service` on `listener` and runs its projection until `shutdown`
/// completes; then lets requests in flight finish and the runner commit
/// and release its lease, and returns.
///
/// # Errors
///
/// When the server or the runner fails.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let service = Arc::new(service);
    let (stop, stopping) = watch::channel(false);
    let runner = {
        let runner = service.runner.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await
        })
    };
    let mut server_stopping = stopping;
    let server =
        axum::serve(listener, routes::router(service)).with_graceful_shutdown(async move {
            let _ = server_stopping.wait_for(|stop| *stop).await;
        });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    let _ = stop.send(true);
    let served = server.await.map_err(std::io::Error::other)?;
    let ran = runner.await.map_err(std::io::Error::other)?;
    served?;
    ran?;
    Ok(())
}
