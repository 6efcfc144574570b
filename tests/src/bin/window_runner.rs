//! One instance of two partitioned windowed read models in a process of
//! its own, for the test that kills one mid-work
//! (`tests/tests/window_processes.rs`).
//!
//! Runs the sensors' statistics (`cqrs_tests::readings`) in 5-minute
//! tumbling windows (`sensor_stats_v1`) and in sessions (`sensor_stats_v3`),
//! each split into `PARTITIONS` partitions, until SIGTERM (then it leaves,
//! giving its partitions up) or SIGKILL. Configured by environment:
//! `DATABASE_URL`, `SCHEMA`, `OWNER`, `LEASE_MS`, `PARTITIONS`. Prints
//! `running` once started, and exits with a runner's error, if any (code 2).

use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::env::{number, var};
use cqrs_tests::readings::{SensorStats, sessions, tumbling};
use cqrskit::postgres::{PartitionedRunner, PgWindows, PostgresEventStore, RunnerOptions};
use cqrskit::window::WindowSpec;
use tokio::sync::watch;

fn runner(
    store: &PostgresEventStore,
    spec: WindowSpec<cqrs_tests::readings::SensorEvent>,
    version: u32,
) -> PartitionedRunner<PgWindows<SensorStats>> {
    let windows = Arc::new(PgWindows::<SensorStats>::version(store, spec, version));
    let partitions = usize::try_from(number("PARTITIONS")).expect("a partition count");
    PartitionedRunner::new(store.clone(), windows, partitions)
        .expect("partitions")
        .with_owner(var("OWNER"))
        .with_options(
            RunnerOptions::default()
                .batch_size(5)
                .lease_duration(Duration::from_millis(number("LEASE_MS")))
                .poll_interval(Duration::from_millis(50)),
        )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = var("OWNER");
    let store = cqrs_tests::env::process_store(&owner, 16).await;
    let fixed = runner(&store, tumbling(), 1);
    let sessions = runner(&store, sessions(), 3);
    let (stop, stopped) = watch::channel(false);
    let shutdown = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::spawn(async move {
        terminate.recv().await;
        let _ = stop.send(true);
    });
    println!("running");
    let (a, b) = tokio::join!(
        fixed.run(shutdown(stopped.clone())),
        sessions.run(shutdown(stopped))
    );
    if let Err(error) = a.and(b) {
        eprintln!("runner error: {error}");
        std::process::exit(2);
    }
}
