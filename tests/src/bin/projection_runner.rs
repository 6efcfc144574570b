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
use cqrskit::postgres::{ProjectionRunner, RunnerOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = var("OWNER");
    let store = cqrs_tests::env::process_store(&owner, 4).await;
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
