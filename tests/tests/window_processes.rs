//! Windowed read models split into partitions across OS processes while
//! sensors report: one process killed with SIGKILL mid-work, another
//! taking its partitions over. The windows (tumbling and sessions, with
//! late readings) then hold what a recomputation from the log gives:
//! nothing applied twice, nothing lost, every key's readings in order.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_tests::instances::Instances;
use cqrs_tests::postgres::{TestStore, database_url};
use cqrs_tests::readings::{
    SensorStats, answers, log_readings, recompute, sessions, tumbling, write_readings,
};
use cqrskit::postgres::{PartitionedRunner, PgWindows};
use cqrskit::window::{WindowQueries, WindowSpec};

const LEASE_MS: u64 = 2000;
const PARTITIONS: usize = 3;
const SENSORS: usize = 10;
const READINGS: usize = 60;

/// An instance process.
fn instance(db: &TestStore, owner: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_window_runner"));
    command
        .env("DATABASE_URL", database_url())
        .env("SCHEMA", &db.schema)
        .env("OWNER", owner)
        .env("LEASE_MS", LEASE_MS.to_string())
        .env("PARTITIONS", PARTITIONS.to_string());
    command
}

/// The read model `version` of the instances, seen from the test.
fn windows(
    db: &TestStore,
    spec: WindowSpec<cqrs_tests::readings::SensorEvent>,
    version: u32,
) -> (
    Arc<PgWindows<SensorStats>>,
    PartitionedRunner<PgWindows<SensorStats>>,
) {
    let windows = Arc::new(PgWindows::<SensorStats>::version(&db.store, spec, version));
    let runner =
        PartitionedRunner::new(db.store.clone(), windows.clone(), PARTITIONS).expect("partitions");
    (windows, runner)
}

/// Waits until every partition has applied the whole log.
async fn caught_up(runner: &PartitionedRunner<PgWindows<SensorStats>>) {
    let started = Instant::now();
    loop {
        let mut behind = 0;
        for partition in runner.partitions() {
            behind += partition.lag().await.expect("lag").events;
        }
        if behind == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{behind} events still to apply"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_in_partitions_survive_a_killed_process_and_match_a_recomputation() {
    let db = TestStore::new().await;
    write_readings(&*db.shared(), SENSORS, 0, READINGS / 3).await;
    let mut instances = Instances::default();
    instances.start("a", instance(&db, "a"));
    instances.start("b", instance(&db, "b"));
    let (fixed, fixed_runner) = windows(&db, tumbling(), 1);
    let (runs, runs_runner) = windows(&db, sessions(), 3);
    // The tables, for the queries below, before the instances' first batch.
    fixed_runner.setup().await.expect("setup");
    runs_runner.setup().await.expect("setup");

    // The rest of the readings arrive while the instances work; one dies.
    let writer = tokio::spawn({
        let store = db.shared();
        async move { write_readings(&*store, SENSORS, READINGS / 3, READINGS).await }
    });
    let started = Instant::now();
    loop {
        // Killed once both read models have windows, mid-work.
        let (some_fixed, some_runs) = (
            fixed.latest("s0").await.expect("latest").is_some(),
            runs.latest("s0").await.expect("latest").is_some(),
        );
        // language=SQL
        let held_by_a: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE owner = 'a' AND lease_expires_at > now()",
            db.table("projections")
        ))
        .fetch_one(db.pool())
        .await
        .expect("leases");
        if some_fixed && some_runs && held_by_a >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no windows yet"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!writer.is_finished(), "killed while readings still arrive");
    instances.kill("a");
    instances.start("c", instance(&db, "c"));
    writer.await.expect("writer");

    caught_up(&fixed_runner).await;
    caught_up(&runs_runner).await;
    let readings = log_readings(&*db.shared()).await;
    assert_eq!(readings.len(), SENSORS * READINGS);
    for (windows, spec, kind) in [
        (&fixed, tumbling(), "tumbling"),
        (&runs, sessions(), "sessions"),
    ] {
        let expected = recompute(&spec, &readings);
        assert!(
            expected.1.values().sum::<u64>() > 0,
            "{kind}: late readings"
        );
        assert_eq!(answers(&**windows, SENSORS).await, expected, "{kind}");
    }
    instances.leave("b");
    instances.leave("c");
    db.drop_schema().await;
}
