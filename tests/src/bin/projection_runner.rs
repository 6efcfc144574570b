//! A projection runner in a process of its own, for the tests that freeze
//! and kill runners with real signals (`tests/tests/runner_processes.rs`).
//!
//! Runs the test ledger (`cqrs_tests::ledger::Ledger`, tables created by the
//! test) until killed. Configured by environment: `DATABASE_URL`, `SCHEMA`,
//! `OWNER` (also the session's `application_name`), `LEASE_MS`,
//! `SLOW_AMOUNT` / `SLOW_MS` (deposits of that amount take that long), and
//! optionally `TYPES=without-withdrawals` (the projector of an older version,
//! which does not know withdrawals). Exits with the runner's error, if any.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cqrs_tests::env::{number, var};
use cqrs_tests::ledger::Ledger;
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner, RunnerOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = var("OWNER");
    let options: PgConnectOptions = var("DATABASE_URL").parse().expect("DATABASE_URL");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.application_name(&owner))
        .await
        .expect("connect");
    let store = PostgresEventStore::from_pool(pool)
        .with_schema(&var("SCHEMA"))
        .expect("schema");
    let mut ledger = Ledger::open(&var("SCHEMA"), "ledger");
    if std::env::var("TYPES").as_deref() == Ok("without-withdrawals") {
        ledger.types = &["AccountOpened", "DepositMade"];
    }
    let ledger = Arc::new(ledger);
    ledger
        .slow_amount
        .store(number("SLOW_AMOUNT"), Ordering::SeqCst);
    ledger
        .slow_millis
        .store(number("SLOW_MS"), Ordering::SeqCst);
    let runner = ProjectionRunner::new(store, ledger)
        .with_owner(owner)
        .with_options(
            RunnerOptions::default()
                .batch_size(5)
                .lease_duration(Duration::from_millis(number("LEASE_MS")))
                .poll_interval(Duration::from_millis(50)),
        );
    if let Err(error) = runner.run(std::future::pending()).await {
        eprintln!("runner error: {error}");
        std::process::exit(2);
    }
}
