//! Benchmarks of the framework on PostgreSQL, each against a raw-SQL baseline
//! written directly on sqlx and measured in the same run, so the ratios hold
//! however noisy the machine is.
//!
//! Run the full benchmark (release build, a few minutes):
//!
//! ```text
//! DATABASE_URL=$(scripts/ensure-postgres) cargo run --release -p cqrs-bench
//! ```
//!
//! It prints one line per scenario:
//! `scenario=<name> framework=<value> baseline=<value> unit=<unit> ratio=<framework/baseline>`,
//! with p50/p99 latencies where single commands are timed. `--smoke` runs
//! every scenario with tiny sizes (the test suite does, so this program cannot
//! rot). Each scenario works in a fresh schema and checks afterwards that what
//! it wrote reads back right.

mod live_lag;
mod partitions;

pub use partitions::{WORKER_FLAG, partition_worker};
mod cluster;
mod peer;
mod relay;
mod report;
mod scenarios;
mod tally;

pub use report::{Latency, Report};

use cqrskit::postgres::sqlx::PgPool;
use cqrskit::postgres::sqlx::postgres::PgPoolOptions;

/// Sizes of the scenarios.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// seq-command: commands on one aggregate, one after another.
    pub seq_commands: usize,
    /// concurrent-commands: aggregates.
    pub aggregates: usize,
    /// concurrent-commands: commands per aggregate.
    pub commands_per_aggregate: usize,
    /// concurrent-commands: concurrent tasks.
    pub tasks: usize,
    /// long-stream-load: events in the stream.
    pub long_stream: usize,
    /// long-stream-load: commands timed with a snapshot.
    pub snapshot_commands: usize,
    /// batch-append: commands.
    pub batch_commands: usize,
    /// batch-append: events per command.
    pub batch_size: usize,
    /// projection-catch-up: events in the log.
    pub catch_up_events: usize,
    /// live-lag: events timed from commit to read model, per load.
    pub lag_samples: usize,
    /// vs-cqrs-es: aggregates of ten commands each, one after another.
    pub short_streams: usize,
    /// relay: events relayed to JetStream (enough for the steady rate, not
    /// the first batch's).
    pub relay_events: usize,
    /// nats-cluster: messages read by the split consumer and its baseline.
    pub consumer_messages: usize,
    /// partitions: the program run as a partition's worker, with
    /// [`WORKER_FLAG`] (`None`: this program).
    pub worker_program: Option<std::path::PathBuf>,
}

impl Config {
    /// The sizes the performance page reports.
    pub fn full() -> Self {
        Self {
            seq_commands: 2000,
            aggregates: 1000,
            commands_per_aggregate: 10,
            tasks: 20,
            long_stream: 10_000,
            snapshot_commands: 200,
            batch_commands: 200,
            batch_size: 100,
            catch_up_events: 100_000,
            lag_samples: 200,
            short_streams: 100,
            relay_events: 30_000,
            consumer_messages: 4000,
            worker_program: None,
        }
    }

    /// Tiny sizes, to check that every scenario still runs and verifies.
    pub fn smoke() -> Self {
        Self {
            seq_commands: 20,
            aggregates: 8,
            commands_per_aggregate: 3,
            tasks: 4,
            long_stream: 300,
            snapshot_commands: 5,
            batch_commands: 4,
            batch_size: 10,
            catch_up_events: 2000,
            lag_samples: 10,
            short_streams: 3,
            relay_events: 50,
            consumer_messages: 40,
            worker_program: None,
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A read-back check failed: the framework or the baseline wrote wrong data.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A command failed.
    #[error("command failed: {0}")]
    Command(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] cqrskit::StoreError),
    /// A baseline query failed.
    #[error(transparent)]
    Database(#[from] cqrskit::postgres::sqlx::Error),
    /// A payload did not decode.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A new event did not encode.
    #[error(transparent)]
    Encode(#[from] cqrskit::EncodeError),
    /// Setting up the store, or a projection runner, failed.
    #[error(transparent)]
    Postgres(Box<cqrskit::postgres::Error>),
    /// A task panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),
}

impl BenchError {
    pub(crate) fn task(error: impl std::fmt::Display) -> Self {
        BenchError::Task(error.to_string())
    }
}

impl From<cqrskit::postgres::Error> for BenchError {
    fn from(error: cqrskit::postgres::Error) -> Self {
        BenchError::Postgres(Box::new(error))
    }
}

impl<E: std::error::Error> From<cqrskit::CommandError<E>> for BenchError {
    fn from(error: cqrskit::CommandError<E>) -> Self {
        BenchError::Command(error.to_string())
    }
}

/// Connects to `url` with a pool large enough for the concurrent scenario,
/// set up as `PostgresEventStore::connect` sets up its own (no ping before
/// each use): the framework's rows measure the defaults a user gets, and
/// the baselines share the same pool.
///
/// # Errors
///
/// When the database cannot be reached.
pub async fn connect(url: &str, config: &Config) -> Result<PgPool, BenchError> {
    Ok(PgPoolOptions::new()
        .test_before_acquire(false)
        // live-lag runs a runner, four unrelated writers and a listener at once.
        .max_connections(u32::try_from((config.tasks + 4).max(12)).unwrap_or(32))
        .connect(url)
        .await?)
}

/// The scenario groups, by the name given on the command line.
pub const SCENARIOS: &[&str] = &[
    "seq-command",
    "concurrent-commands",
    "long-stream-load",
    "batch-append",
    "projection-catch-up",
    "document-catch-up",
    "live-lag",
    "vs-cqrs-es",
    "relay",
    "partitions",
    "nats-cluster",
];

/// Runs the scenarios named in `only` (all when empty), calling `each` with
/// each report as it is ready.
///
/// # Errors
///
/// The first scenario that fails or does not verify.
pub async fn run(
    pool: &PgPool,
    config: &Config,
    only: &[String],
    mut each: impl FnMut(&Report),
) -> Result<Vec<Report>, BenchError> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut reports = Vec::new();
    let mut add = |new: Vec<Report>, reports: &mut Vec<Report>| {
        for report in new {
            each(&report);
            reports.push(report);
        }
    };
    if wanted("seq-command") {
        add(scenarios::seq_command(pool, config).await?, &mut reports);
    }
    if wanted("concurrent-commands") {
        add(
            scenarios::concurrent_commands(pool, config).await?,
            &mut reports,
        );
    }
    if wanted("long-stream-load") {
        add(
            scenarios::long_stream_load(pool, config).await?,
            &mut reports,
        );
    }
    if wanted("batch-append") {
        add(scenarios::batch_append(pool, config).await?, &mut reports);
    }
    if wanted("projection-catch-up") {
        add(
            scenarios::projection_catch_up(pool, config).await?,
            &mut reports,
        );
    }
    if wanted("document-catch-up") {
        add(
            scenarios::document_catch_up(pool, config).await?,
            &mut reports,
        );
    }
    if wanted("vs-cqrs-es") {
        add(peer::vs_cqrs_es(pool, config).await?, &mut reports);
    }
    if wanted("relay") {
        add(relay::relay(pool, config).await?, &mut reports);
        add(relay::relay_latency(pool, config).await?, &mut reports);
    }
    if wanted("live-lag") {
        add(live_lag::live_lag(pool, config).await?, &mut reports);
    }
    if wanted("nats-cluster") {
        add(cluster::nats_cluster(pool, config).await?, &mut reports);
    }
    if wanted("partitions") {
        add(partitions::partitions(pool, config).await?, &mut reports);
    }
    Ok(reports)
}
