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
//! - `GET /health`: the database and every hosted service; `GET /metrics`:
//!   Prometheus' text format.
//!
//! Errors are JSON (`{"error": kind, "message": ...}`) with the status
//! [`HttpError`](cqrskit::http::HttpError) gives them. The [`Host`] runs
//! it all: migrations first, then the projection and the server; on
//! shutdown the server finishes the requests in flight, then the runner
//! commits its batch and gives its lease up.

mod routes;

use std::sync::Arc;

use cqrskit::CommandPipeline;
use cqrskit::host::{Host, HostHandle};
use cqrskit::http::HttpServer;
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner, RunnerOptions};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::bank_account::BankAccount;
use crate::bank_account::balances::AccountBalances;

/// What the handlers share.
struct Service {
    store: PostgresEventStore,
    accounts: CommandPipeline<BankAccount>,
    balances: AccountBalances,
    host: HostHandle,
    metrics: Option<PrometheusHandle>,
}

/// The service on `listener` over `store`, its balances projection run
/// with `options` ([`balances_options`](crate::bank_account::balances::balances_options) for the recommended ones),
/// reporting `metrics` at `/metrics` when given: [`Host::run`] it.
pub fn host(
    store: PostgresEventStore,
    listener: TcpListener,
    options: RunnerOptions,
    metrics: Option<PrometheusHandle>,
) -> Host {
    let balances = AccountBalances::new(&store);
    let runner = ProjectionRunner::new(store.clone(), Arc::new(balances.clone()));
    let host = Host::new()
        .prepare(store.clone())
        .service(runner.with_options(options));
    let service = Service {
        accounts: CommandPipeline::new(Arc::new(store.clone()), ()),
        host: host.handle(),
        balances,
        store,
        metrics,
    };
    host.service(HttpServer::new(listener, routes::router(service)))
}
