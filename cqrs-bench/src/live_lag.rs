//! live-lag: how long an event takes from its append's commit to a live read
//! model, with the runner's default options, on a quiet database and while
//! unrelated writers work in another schema of the same database (many short
//! write transactions, and now and then one of ~200 ms).
//!
//! The baseline is the least any push can do: a hand-written writer that
//! inserts a row and notifies in one statement, and a listener that takes
//! the notification, with no gap safety at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cqrskit::postgres::ProjectionRunner;
use cqrskit::postgres::sqlx::postgres::PgListener;
use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::{CommandPipeline, EventStore};

use crate::report::{Latency, Report, quantile};
use crate::scenarios::Sandbox;
use crate::tally::{AddMany, Tally, TallyRows};
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// Runs the scenario on a quiet database, then under unrelated writers.
pub(crate) async fn live_lag(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let quiet = measure(pool, config, "live-lag-quiet").await?;
    let writers = UnrelatedWriters::start(pool).await?;
    let busy = measure(pool, config, "live-lag-busy").await;
    let stopped = writers.stop().await;
    let busy = busy?;
    stopped?;
    Ok(vec![quiet, busy])
}

async fn measure(pool: &PgPool, config: &Config, scenario: &'static str) -> Result<Report> {
    let sandbox = Sandbox::new(pool).await?;
    let rows = sandbox.table("rows_framework");
    sqlx::query(&format!(
        "CREATE TABLE {rows} (event_id uuid PRIMARY KEY, stream text NOT NULL, n bigint NOT NULL)"
    ))
    .execute(pool)
    .await?;
    let runner = Arc::new(ProjectionRunner::new(
        sandbox.store.clone(),
        Arc::new(TallyRows {
            name: "tally_rows".to_owned(),
            table: rows.clone(),
        }),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let tallies =
        CommandPipeline::<Tally>::new(Arc::new(sandbox.store.clone()) as Arc<dyn EventStore>, ());
    let mut framework = Vec::with_capacity(config.lag_samples);
    for sample in 0..config.lag_samples {
        let outcome = tallies
            .execute(&format!("t{sample}"), AddMany { count: 1 })
            .await?;
        let committed = Instant::now();
        let event_id = outcome
            .events
            .first()
            .map(|event| event.event_id)
            .ok_or_else(|| BenchError::Verification("a command appended no event".into()))?;
        wait_for_row(pool, &rows, event_id).await?;
        framework.push(committed.elapsed());
        // Appends spaced out, as a live service sees them.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    running.await.map_err(BenchError::task)??;

    let mut baseline = raw_push(pool, &sandbox, config.lag_samples).await?;
    sandbox.drop().await?;
    let latency = Latency {
        p50: quantile(&mut framework, 0.5),
        p99: quantile(&mut framework, 0.99),
        baseline_p50: quantile(&mut baseline, 0.5),
        baseline_p99: quantile(&mut baseline, 0.99),
    };
    let max = framework.iter().max().copied().unwrap_or_default();
    let baseline_max = baseline.iter().max().copied().unwrap_or_default();
    Ok(Report {
        max: None,
        peer: None,
        peer_latency: None,
        scenario,
        framework: latency.p99.as_secs_f64() * 1e3,
        baseline: latency.baseline_p99.as_secs_f64() * 1e3,
        unit: "p99 ms",
        latency: Some(latency),
    }
    .with_max(max, baseline_max))
}

/// Polls the read model every millisecond until the event's row is there.
async fn wait_for_row(pool: &PgPool, rows: &str, event_id: uuid::Uuid) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {rows} WHERE event_id = $1)");
    loop {
        let there: bool = sqlx::query_scalar(&sql)
            .bind(event_id)
            .fetch_one(pool)
            .await?;
        if there {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Verification(format!(
                "event {event_id} not applied within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The baseline: insert and notify in one statement, timed from its return to
/// the listener's receipt.
async fn raw_push(pool: &PgPool, sandbox: &Sandbox, samples: usize) -> Result<Vec<Duration>> {
    let channel = format!("raw_{}", uuid::Uuid::now_v7().simple());
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&channel).await?;
    let insert = format!(
        "WITH inserted AS (
             INSERT INTO {} (stream, version, payload) VALUES ($1, 1, '{{}}') RETURNING stream
         )
         SELECT pg_notify($2, stream) FROM inserted",
        sandbox.table("raw_events")
    );
    let mut latencies = Vec::with_capacity(samples);
    for sample in 0..samples {
        let stream = format!("r{sample}");
        sqlx::query(&insert)
            .bind(&stream)
            .bind(&channel)
            .execute(pool)
            .await?;
        let committed = Instant::now();
        loop {
            let notification = listener.recv().await?;
            if notification.payload() == stream {
                break;
            }
        }
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(latencies)
}

/// Another application in the same database: three tasks committing short
/// write transactions (2-6 ms) back to back, and one that holds a write
/// transaction ~200 ms about once a second.
struct UnrelatedWriters {
    schema: String,
    pool: PgPool,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl UnrelatedWriters {
    async fn start(pool: &PgPool) -> Result<Self> {
        let schema = format!("unrelated_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(pool)
            .await?;
        sqlx::query(&format!("CREATE TABLE {schema}.work (n bigint)"))
            .execute(pool)
            .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (writer, (hold, pause)) in [(2, 0), (4, 0), (6, 0), (200, 800)].into_iter().enumerate()
        {
            let (pool, stop) = (pool.clone(), stop.clone());
            let insert = format!("INSERT INTO {schema}.work VALUES ($1)");
            tasks.push(tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = pool.begin().await?;
                    sqlx::query(&insert).bind(n).execute(&mut *tx).await?;
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    tx.commit().await?;
                    n += 1;
                    if pause > 0 {
                        tokio::time::sleep(Duration::from_millis(pause + writer as u64)).await;
                    }
                }
                Ok(())
            }));
        }
        Ok(Self {
            schema,
            pool: pool.clone(),
            stop,
            tasks,
        })
    }

    async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.map_err(BenchError::task)??;
        }
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
