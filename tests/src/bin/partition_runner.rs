//! One instance of a partitioned projection in a process of its own, for
//! the tests that run several, kill and freeze them
//! (`tests/tests/partitions.rs`).
//!
//! Runs the test ledger (`cqrs_tests::ledger::Ledger`, tables created by the
//! test) split into `PARTITIONS` partitions until SIGTERM (then it leaves,
//! giving its partitions up) or SIGKILL. Configured by environment:
//! `DATABASE_URL`, `SCHEMA`, `OWNER` (also the session's
//! `application_name`), `LEASE_MS`, `PARTITIONS`, and optionally `LEDGER`
//! (the projection's name, `ledger` by default). Prints `running` once its
//! first share is set, and exits with the runner's error, if any (code 2).

use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::env::{number, var};
use cqrs_tests::ledger::Ledger;
use cqrskit::postgres::{PartitionedRunner, RunnerOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = var("OWNER");
    let store = cqrs_tests::env::process_store(&owner, 12).await;
    let name = std::env::var("LEDGER").unwrap_or_else(|_| "ledger".to_owned());
    let ledger = Arc::new(Ledger::open(&var("SCHEMA"), &name));
    let partitions = usize::try_from(number("PARTITIONS")).expect("a partition count");
    let runner = PartitionedRunner::new(store, ledger, partitions)
        .expect("partitions")
        .with_owner(owner)
        .with_options(
            RunnerOptions::default()
                .batch_size(20)
                .lease_duration(Duration::from_millis(number("LEASE_MS")))
                .poll_interval(Duration::from_millis(50)),
        );
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    println!("running");
    if let Err(error) = runner
        .run(async move {
            terminate.recv().await;
        })
        .await
    {
        eprintln!("runner error: {error}");
        std::process::exit(2);
    }
}
