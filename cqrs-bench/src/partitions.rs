//! partitions: a projection's catch-up split into 2 and 4 partitions, each
//! in an OS process of its own, against the same catch-up in one process
//! with one partition, in the same run.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::postgres::{Partition, PostgresEventStore, ProjectionRunner, RunnerOptions};

use crate::report::{Report, per_second};
use crate::scenarios::{Sandbox, check};
use crate::tally::TallyRows;
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// The flag that makes the benchmark program a partition's worker.
pub const WORKER_FLAG: &str = "--partition-worker";

/// Appends `config.catch_up_events` events to 1000 streams, then catches a
/// projection (one row per event) up with 1, 2 and 4 partitions, each
/// partition in a process of its own, timed from the start of the
/// processes to the exit of the last.
pub(crate) async fn partitions(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    let streams = 1000.min(config.catch_up_events.max(1));
    let total = sandbox
        .tally_log(streams, config.catch_up_events / streams)
        .await?;
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| BenchError::Task("the partition workers need DATABASE_URL".into()))?;
    let program = match &config.worker_program {
        Some(program) => program.clone(),
        None => std::env::current_exe().map_err(BenchError::task)?,
    };
    let mut rates = Vec::new();
    for count in [1, 2, 4] {
        let table = sandbox.table(&format!("rows_{count}"));
        sqlx::query(&format!(
            "CREATE TABLE {table} (event_id uuid PRIMARY KEY, stream text NOT NULL, n bigint NOT NULL)"
        ))
        .execute(sandbox.pool())
        .await?;
        let started = Instant::now();
        let workers: Vec<_> = (0..count)
            .map(|index| {
                tokio::process::Command::new(&program)
                    .args([
                        WORKER_FLAG,
                        sandbox.schema(),
                        &table,
                        &index.to_string(),
                        &count.to_string(),
                    ])
                    .env("DATABASE_URL", &url)
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()
            .map_err(BenchError::task)?;
        let mut applied = 0;
        for worker in workers {
            let output = worker.wait_with_output().await.map_err(BenchError::task)?;
            check(
                output.status.success(),
                format!("a partition worker failed: {}", output.status),
            )?;
            applied += String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<usize>()
                .map_err(BenchError::task)?;
        }
        rates.push((count, per_second(total, started.elapsed())));
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(sandbox.pool())
            .await?;
        check(
            applied == total && rows == total as i64,
            format!("{count} partitions applied {applied} events and wrote {rows} rows of {total}"),
        )?;
    }
    sandbox.drop().await?;
    let single = rates[0].1;
    Ok(rates[1..]
        .iter()
        .map(|&(count, rate)| {
            let scenario = if count == 2 {
                "partitioned-catch-up-2"
            } else {
                "partitioned-catch-up-4"
            };
            Report::new(scenario, rate, single, "events/s")
        })
        .collect())
}

/// A partition's worker: catches partition `index` of `count` of the tally
/// rows projection in `schema` (rows into `table`) up, prints how many
/// events it applied.
///
/// # Errors
///
/// When the arguments are wrong or the catch-up fails.
pub async fn partition_worker(args: &[String]) -> Result<()> {
    let [schema, table, index, count] = args else {
        return Err(BenchError::Task(format!(
            "{WORKER_FLAG} <schema> <table> <index> <count>"
        )));
    };
    let number = |text: &String| text.parse::<usize>().map_err(BenchError::task);
    let partition = Partition::new(number(index)?, number(count)?).map_err(BenchError::task)?;
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| BenchError::Task("the partition worker needs DATABASE_URL".into()))?;
    let store = PostgresEventStore::connect(&url)
        .await?
        .with_schema(schema)?;
    // One projection per split: a projection's partition count is fixed
    // (runners of another count refuse to start).
    let projector = Arc::new(TallyRows {
        name: format!("tally_rows_{count}"),
        table: table.clone(),
    });
    let runner = ProjectionRunner::new(store, projector)
        .for_partition(partition)
        .with_options(RunnerOptions::default().batch_size(1000));
    check(
        runner.acquire_lease().await?,
        format!("the lease of {} is taken", runner.name()),
    )?;
    let applied = runner.catch_up().await?;
    runner.release_lease().await?;
    println!("{applied}");
    Ok(())
}
