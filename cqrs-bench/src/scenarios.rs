//! The scenarios. Each runs the framework and its raw-SQL baseline on the same
//! database in the same process, then checks that what was written reads back
//! right, so a fast wrong answer cannot pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_examples::bank_account::{BankAccount, Deposit, DepositMade, OpenAccount};
use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner, RunnerOptions, slice_of};
use cqrskit::{
    CommandPipeline, EventStore, ExpectedVersion, LogFilter, Metadata, NewEvent, Position,
    SnapshotPolicy, StreamId,
};

use crate::report::{Latency, Report, per_second, quantile};
use crate::tally::{AddMany, Added, Tally, TallyEvent, TallyRows};
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// A store in a fresh schema, with a raw table for the baselines.
pub(crate) struct Sandbox {
    pub(crate) store: PostgresEventStore,
    schema: String,
}

impl Sandbox {
    pub(crate) async fn new(pool: &PgPool) -> Result<Self> {
        let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
        let store = PostgresEventStore::from_pool(pool.clone()).with_schema(&schema)?;
        store.migrate().await?;
        // The baseline's table: what one event needs at the least, keyed like
        // the store's so the database does the same uniqueness work.
        sqlx::query(&format!(
            "CREATE TABLE {} (stream text NOT NULL, version bigint NOT NULL, payload jsonb NOT NULL,
                              PRIMARY KEY (stream, version))",
            table_of(&schema, "raw_events")
        ))
        .execute(pool)
        .await?;
        Ok(Self { store, schema })
    }

    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    pub(crate) fn table(&self, table: &str) -> String {
        table_of(&self.schema, table)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    pub(crate) fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    /// Writes `per_stream` tally events to each of `streams` streams (`t0`,
    /// `t1`, ...), in appends of at most 1000, then refreshes the planner's
    /// statistics; returns how many events it wrote.
    pub(crate) async fn tally_log(&self, streams: usize, per_stream: usize) -> Result<usize> {
        let tallies = CommandPipeline::<Tally>::new(self.shared(), ());
        for stream in 0..streams {
            let mut left = per_stream;
            while left > 0 {
                let count = left.min(1000);
                tallies
                    .execute(
                        &format!("t{stream}"),
                        AddMany {
                            count: count as i64,
                        },
                    )
                    .await?;
                left -= count;
            }
        }
        self.analyze().await?;
        Ok(streams * per_stream)
    }

    /// Refreshes the planner's statistics after a bulk load, as an operator
    /// does after importing events: without them PostgreSQL may plan a log
    /// read as a sort of everything after the checkpoint.
    pub(crate) async fn analyze(&self) -> Result<()> {
        sqlx::query(&format!("ANALYZE {}", self.table("events")))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn drop(self) -> Result<()> {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Creates `events_copy`, a copy of the events table (same columns,
    /// defaults and indexes): the same-schema baselines
    /// write there.
    async fn create_events_copy(&self) -> Result<()> {
        sqlx::query(&format!(
            "CREATE TABLE {} (LIKE {} INCLUDING ALL)",
            self.table("events_copy"),
            self.table("events")
        ))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// One raw autocommit insert of one event.
    pub(crate) async fn raw_insert(&self, stream: &str, version: i64) -> Result<Duration> {
        let started = Instant::now();
        sqlx::query(&format!(
            "INSERT INTO {} (stream, version, payload) VALUES ($1, $2, $3::jsonb)",
            self.table("raw_events")
        ))
        .bind(stream)
        .bind(version)
        .bind(r#"{"amount":1}"#)
        .execute(self.pool())
        .await?;
        Ok(started.elapsed())
    }

    async fn raw_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}",
            self.table("raw_events")
        ))
        .fetch_one(self.pool())
        .await?)
    }
}

fn table_of(schema: &str, table: &str) -> String {
    format!("\"{schema}\".{table}")
}

pub(crate) fn check(condition: bool, what: impl Into<String>) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(BenchError::Verification(what.into()))
    }
}

/// One aggregate, commands one after another, its stream growing.
pub(crate) async fn seq_command(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    // The cached pipeline never reads; the uncached one loads the aggregate
    // before each command, from a snapshot taken every 50 events (what an
    // application without the cache would configure), or, as a diagnostic
    // of what replay costs, from the whole stream.
    for (scenario, cache, snapshots) in [
        ("seq-command", true, SnapshotPolicy::Never),
        ("seq-command-uncached", false, SnapshotPolicy::Every(50)),
        (
            "seq-command-uncached-no-snapshots",
            false,
            SnapshotPolicy::Never,
        ),
    ] {
        let sandbox = Sandbox::new(pool).await?;
        let mut accounts =
            CommandPipeline::<BankAccount>::new(sandbox.shared(), ()).with_snapshots(snapshots);
        // The cache is on by default; the uncached rows turn it off.
        accounts = accounts.with_state_cache(if cache { 16 } else { 0 });
        accounts
            .execute(
                "acc",
                OpenAccount {
                    owner: "bench".into(),
                },
            )
            .await?;

        let mut framework = Vec::with_capacity(config.seq_commands);
        let started = Instant::now();
        for _ in 0..config.seq_commands {
            let command = Instant::now();
            accounts.execute("acc", Deposit { amount: 1 }).await?;
            framework.push(command.elapsed());
        }
        let framework_rate = per_second(config.seq_commands, started.elapsed());

        let mut baseline = Vec::with_capacity(config.seq_commands);
        let started = Instant::now();
        for version in 1..=config.seq_commands {
            baseline.push(sandbox.raw_insert("acc", version as i64).await?);
        }
        let baseline_rate = per_second(config.seq_commands, started.elapsed());

        let loaded = accounts.load("acc").await?;
        check(
            loaded.state.balance == config.seq_commands as u64
                && loaded.version == config.seq_commands as u64 + 1,
            format!(
                "{scenario}: balance {} at version {}",
                loaded.state.balance, loaded.version
            ),
        )?;
        check(
            sandbox.raw_count().await? == config.seq_commands as i64,
            "seq baseline row count",
        )?;
        let p50 = quantile(&mut framework, 0.5);
        let p99 = quantile(&mut framework, 0.99);
        reports.push(Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario,
            framework: framework_rate,
            baseline: baseline_rate,
            unit: "ops/s",
            latency: Some(Latency {
                p50,
                p99,
                baseline_p50: quantile(&mut baseline, 0.5),
                baseline_p99: quantile(&mut baseline, 0.99),
            }),
        });
        if scenario == "seq-command-uncached" {
            let (rate, mut latencies) =
                hand_written_uncached(&sandbox, config.seq_commands).await?;
            reports.push(
                Report::new(
                    "seq-command-uncached-hand-written",
                    framework_rate,
                    rate,
                    "ops/s",
                )
                .with_latency(Latency {
                    p50,
                    p99,
                    baseline_p50: quantile(&mut latencies, 0.5),
                    baseline_p99: quantile(&mut latencies, 0.99),
                }),
            );
        }
        sandbox.drop().await?;
    }
    Ok(reports)
}

/// What a careful program written straight on sqlx does for a command on
/// an aggregate it does not keep in memory, over tables of its own: one
/// statement reads the aggregate's snapshot and the events after it, which
/// serde decodes and folds; one statement inserts the new event and, every
/// 50 versions, the snapshot with it. Returns the rate and each command's
/// latency.
async fn hand_written_uncached(sandbox: &Sandbox, commands: usize) -> Result<(f64, Vec<Duration>)> {
    #[derive(serde::Deserialize)]
    struct Deposited {
        amount: i64,
    }
    let (events, snapshots) = (
        sandbox.table("hand_written_events"),
        sandbox.table("hand_written_snapshots"),
    );
    sqlx::raw_sql(&format!(
        "CREATE TABLE {events} (stream text NOT NULL, version bigint NOT NULL, payload jsonb NOT NULL,
                                PRIMARY KEY (stream, version));
         CREATE TABLE {snapshots} (stream text PRIMARY KEY, version bigint NOT NULL, balance bigint NOT NULL)"
    ))
    .execute(sandbox.pool())
    .await?;
    let load = format!(
        "SELECT version, balance, NULL::text AS payload FROM {snapshots} WHERE stream = $1
         UNION ALL
         (SELECT version, NULL::bigint, payload::text FROM {events}
          WHERE stream = $1
            AND version > coalesce((SELECT version FROM {snapshots} WHERE stream = $1), 0)
          ORDER BY version)"
    );
    let insert =
        format!("INSERT INTO {events} (stream, version, payload) VALUES ($1, $2, $3::jsonb)");
    let insert_with_snapshot = format!(
        "WITH event AS ({insert})
         INSERT INTO {snapshots} (stream, version, balance) VALUES ($1, $2, $4)
         ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, balance = EXCLUDED.balance"
    );
    let mut latencies = Vec::with_capacity(commands);
    let started = Instant::now();
    for _ in 0..commands {
        let command = Instant::now();
        let rows: Vec<(i64, Option<i64>, Option<String>)> = sqlx::query_as(&load)
            .bind("acc")
            .fetch_all(sandbox.pool())
            .await?;
        let (mut version, mut balance) = (0, 0);
        for (at, snapshot, payload) in rows {
            version = at;
            match payload {
                Some(payload) => {
                    let deposited: Deposited = serde_json::from_str(&payload)
                        .map_err(|error| BenchError::Verification(error.to_string()))?;
                    balance += deposited.amount;
                }
                None => balance = snapshot.unwrap_or_default(),
            }
        }
        version += 1;
        balance += 1;
        let query = if version % 50 == 0 {
            sqlx::query(&insert_with_snapshot)
        } else {
            sqlx::query(&insert)
        };
        let query = query.bind("acc").bind(version).bind(r#"{"amount":1}"#);
        let query = if version % 50 == 0 {
            query.bind(balance)
        } else {
            query
        };
        query.execute(sandbox.pool()).await?;
        latencies.push(command.elapsed());
    }
    let rate = per_second(commands, started.elapsed());
    let balance: i64 = sqlx::query_scalar(&format!(
        "SELECT sum((payload->>'amount')::bigint)::bigint FROM {events}"
    ))
    .fetch_one(sandbox.pool())
    .await?;
    check(
        balance == commands as i64,
        format!("hand-written uncached: balance {balance}"),
    )?;
    Ok((rate, latencies))
}

/// Many aggregates, a few commands each, from concurrent tasks: with the
/// defaults (group commit), then (in a fresh schema) with each append
/// committed alone.
pub(crate) async fn concurrent_commands(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let grouped_sandbox = Sandbox::new(pool).await?;
    let grouped = deposits_from_tasks(grouped_sandbox.shared(), config).await?;
    grouped_sandbox.drop().await?;

    let sandbox = Sandbox::new(pool).await?;
    let store: Arc<dyn EventStore> = Arc::new(sandbox.store.clone().without_group_commit());
    let framework = deposits_from_tasks(store.clone(), config).await?;
    let total = config.aggregates * config.commands_per_aggregate;

    let baseline = raw_concurrent(&sandbox, config).await?;

    // The same single-row inserts into a copy of the events table (same
    // columns, defaults and indexes; the correlation id and the slice sent
    // as the store sends them): what the schema costs.
    sandbox.create_events_copy().await?;
    let correlation = uuid::Uuid::now_v7();
    let metadata = format!(r#"{{"correlation_id":"{correlation}"}}"#);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let pool = sandbox.pool().clone();
        let table = sandbox.table("events_copy");
        let config = config.clone();
        let metadata = metadata.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..config.commands_per_aggregate {
                for account in (task..config.aggregates).step_by(config.tasks) {
                    sqlx::query(&format!(
                        "INSERT INTO {table} (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata, correlation_id, slice)
                         VALUES ($1, 'account', $2, $3, 'DepositMade', 1, $4::jsonb, $5::jsonb, $6, $7)"
                    ))
                    .bind(uuid::Uuid::now_v7())
                    .bind(format!("acc-{account}"))
                    .bind(round as i64 + 1)
                    .bind(r#"{"amount":1}"#)
                    .bind(&metadata)
                    .bind(correlation)
                    .bind(slice_of(&StreamId::new("account", format!("acc-{account}"))) as i16)
                    .execute(&pool)
                    .await?;
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(BenchError::task)??;
    }
    let same_schema = per_second(total, started.elapsed());

    check(
        sandbox.raw_count().await? == total as i64,
        "concurrent baseline row count",
    )?;
    sandbox.drop().await?;
    Ok(vec![
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "concurrent-commands",
            framework: grouped,
            baseline,
            unit: "ops/s",
            latency: None,
        },
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "concurrent-commands-same-schema",
            framework,
            baseline: same_schema,
            unit: "ops/s",
            latency: None,
        },
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "concurrent-commands-one-commit-each",
            framework,
            baseline,
            unit: "ops/s",
            latency: None,
        },
    ])
}

/// Opens `config.aggregates` accounts (set-up, not measured), then deposits
/// `config.commands_per_aggregate` times into each from `config.tasks`
/// tasks; returns commands per second, after checking every account ended
/// at the right version.
async fn deposits_from_tasks(store: Arc<dyn EventStore>, config: &Config) -> Result<f64> {
    let accounts = Arc::new(
        CommandPipeline::<BankAccount>::new(store.clone(), ()).with_state_cache(config.aggregates),
    );
    // Opening the accounts is set-up, not measured.
    for chunk in (0..config.aggregates)
        .collect::<Vec<_>>()
        .chunks(config.tasks.max(1))
    {
        let mut opens = Vec::new();
        for &account in chunk {
            let accounts = accounts.clone();
            opens.push(tokio::spawn(async move {
                accounts
                    .execute(
                        &format!("acc-{account}"),
                        OpenAccount {
                            owner: "bench".into(),
                        },
                    )
                    .await
            }));
        }
        for open in opens {
            open.await.map_err(BenchError::task)??;
        }
    }

    let total = config.aggregates * config.commands_per_aggregate;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let accounts = accounts.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..config.commands_per_aggregate {
                let _ = round;
                for account in (task..config.aggregates).step_by(config.tasks) {
                    accounts
                        .execute(&format!("acc-{account}"), Deposit { amount: 1 })
                        .await?;
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(BenchError::task)??;
    }
    let rate = per_second(total, started.elapsed());
    for account in 0..config.aggregates {
        let version = store
            .stream_version(&StreamId::new("account", format!("acc-{account}")))
            .await?;
        check(
            version == config.commands_per_aggregate as u64 + 1,
            format!("concurrent: account {account} at version {version}"),
        )?;
    }
    Ok(rate)
}

/// The raw baseline of concurrent commands: the same single-row inserts from
/// the same number of tasks, into the minimal table. Returns rows per second.
pub(crate) async fn raw_concurrent(sandbox: &Sandbox, config: &Config) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let pool = sandbox.pool().clone();
        let table = sandbox.table("raw_events");
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..config.commands_per_aggregate {
                for account in (task..config.aggregates).step_by(config.tasks) {
                    sqlx::query(&format!(
                        "INSERT INTO {table} (stream, version, payload) VALUES ($1, $2, $3::jsonb)"
                    ))
                    .bind(format!("acc-{account}"))
                    .bind(round as i64 + 1)
                    .bind(r#"{"amount":1}"#)
                    .execute(&pool)
                    .await?;
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(BenchError::task)??;
    }
    Ok(per_second(
        config.aggregates * config.commands_per_aggregate,
        started.elapsed(),
    ))
}

/// Writes `count` deposits of 1 to one account stream, in batches (set-up).
pub(crate) async fn long_stream(store: &PostgresEventStore, id: &str, count: usize) -> Result<()> {
    let stream = StreamId::new("account", id);
    let open = NewEvent::from_event(
        &cqrs_examples::bank_account::AccountEvent::from(
            cqrs_examples::bank_account::AccountOpened {
                owner: "bench".into(),
            },
        ),
        Metadata::new(),
    )?;
    store
        .append(&stream, ExpectedVersion::NoStream, vec![open])
        .await?;
    let mut written = 0;
    while written < count {
        let batch = (count - written).min(1000);
        let events = (0..batch)
            .map(|_| {
                NewEvent::from_event(
                    &cqrs_examples::bank_account::AccountEvent::from(DepositMade { amount: 1 }),
                    Metadata::new(),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        store
            .append(&stream, ExpectedVersion::Exact(written as u64 + 1), events)
            .await?;
        written += batch;
    }
    Ok(())
}

/// Loading an aggregate with a long stream: full replay against a raw select
/// and decode; then one more command with a snapshot.
pub(crate) async fn long_stream_load(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    long_stream(&sandbox.store, "long", config.long_stream).await?;
    sandbox.analyze().await?;
    let accounts = CommandPipeline::<BankAccount>::new(sandbox.shared(), ());

    const ROUNDS: usize = 5;
    let mut framework = Duration::MAX;
    let mut baseline = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let loaded = accounts.load("long").await?;
        framework = framework.min(started.elapsed());
        check(
            loaded.state.balance == config.long_stream as u64,
            "long stream balance",
        )?;

        let started = Instant::now();
        let payloads: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT payload::text FROM {} WHERE aggregate_type = 'account' AND aggregate_id = 'long' AND version > 1 ORDER BY version",
            sandbox.table("events")
        ))
        .fetch_all(sandbox.pool())
        .await?;
        let mut sum = 0;
        for payload in &payloads {
            let deposit: DepositMade = serde_json::from_str(payload)?;
            sum += deposit.amount;
        }
        baseline = baseline.min(started.elapsed());
        check(sum == config.long_stream as u64, "raw decode sum")?;
    }

    // With a snapshot every command, loading reads one row and no events.
    let snapshotted = CommandPipeline::<BankAccount>::new(sandbox.shared(), ())
        .with_snapshots(SnapshotPolicy::Every(1))
        .with_state_cache(0);
    snapshotted.execute("long", Deposit { amount: 1 }).await?;
    let mut commands = Vec::with_capacity(config.snapshot_commands);
    let mut loads = Vec::with_capacity(config.snapshot_commands);
    for _ in 0..config.snapshot_commands {
        let started = Instant::now();
        snapshotted.load("long").await?;
        loads.push(started.elapsed());
        let started = Instant::now();
        snapshotted.execute("long", Deposit { amount: 1 }).await?;
        commands.push(started.elapsed());
    }
    let mut raw = Vec::with_capacity(config.snapshot_commands);
    for version in 1..=config.snapshot_commands {
        raw.push(sandbox.raw_insert("snap", version as i64).await?);
    }
    let expected = (config.long_stream + 1 + config.snapshot_commands) as u64;
    check(
        snapshotted.load("long").await?.state.balance == expected,
        "balance after the snapshotted commands",
    )?;
    sandbox.drop().await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "long-stream-load",
            framework: ms(framework),
            baseline: ms(baseline),
            unit: "ms",
            latency: None,
        },
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "long-stream-load-snapshot",
            framework: ms(quantile(&mut loads.clone(), 0.5)),
            baseline: ms(baseline),
            unit: "ms",
            latency: Some(Latency {
                p50: quantile(&mut loads, 0.5),
                p99: quantile(&mut loads, 0.99),
                baseline_p50: quantile(&mut raw.clone(), 0.5),
                baseline_p99: quantile(&mut raw, 0.99),
            }),
        },
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "long-stream-command-snapshot",
            framework: ms(quantile(&mut commands.clone(), 0.5)),
            baseline: ms(quantile(&mut raw.clone(), 0.5)),
            unit: "ms",
            latency: Some(Latency {
                p50: quantile(&mut commands, 0.5),
                p99: quantile(&mut commands, 0.99),
                baseline_p50: quantile(&mut raw.clone(), 0.5),
                baseline_p99: quantile(&mut raw, 0.99),
            }),
        },
    ])
}

/// Commands that each append a batch of events, against raw multi-row
/// inserts: into the minimal raw table (the physical limit), and into a table
/// with the events table's own columns, defaults and indexes (so the ratio
/// shows the framework's own overhead apart from the schema's cost).
pub(crate) async fn batch_append(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    let tallies = CommandPipeline::<Tally>::new(sandbox.shared(), ()).with_state_cache(16);
    let size = config.batch_size as i64;
    let total = config.batch_commands * config.batch_size;
    let started = Instant::now();
    for _ in 0..config.batch_commands {
        tallies.execute("t", AddMany { count: size }).await?;
    }
    let framework = per_second(total, started.elapsed());

    let payload = r#"{"n":1}"#.to_owned();
    let started = Instant::now();
    for command in 0..config.batch_commands {
        let first = (command * config.batch_size) as i64 + 1;
        let versions: Vec<i64> = (first..first + size).collect();
        sqlx::query(&format!(
            "INSERT INTO {} (stream, version, payload)
             SELECT 't', v, p::jsonb FROM unnest($1::bigint[], $2::text[]) AS u(v, p)",
            sandbox.table("raw_events")
        ))
        .bind(&versions)
        .bind(vec![payload.clone(); config.batch_size])
        .execute(sandbox.pool())
        .await?;
    }
    let baseline = per_second(total, started.elapsed());

    sandbox.create_events_copy().await?;
    let correlation = uuid::Uuid::now_v7();
    let metadata = format!(r#"{{"correlation_id":"{correlation}"}}"#);
    let slice = slice_of(&StreamId::new("tally", "t")) as i16;
    let started = Instant::now();
    for command in 0..config.batch_commands {
        let first = (command * config.batch_size) as i64 + 1;
        let versions: Vec<i64> = (first..first + size).collect();
        let ids: Vec<uuid::Uuid> = versions.iter().map(|_| uuid::Uuid::now_v7()).collect();
        sqlx::query(&format!(
            "INSERT INTO {} (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata, correlation_id, slice)
             SELECT i, 'tally', 't', v, 'Added', 1, p::jsonb, m::jsonb, $5, $6
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS u(i, v, p, m)",
            sandbox.table("events_copy")
        ))
        .bind(&ids)
        .bind(&versions)
        .bind(vec![payload.clone(); config.batch_size])
        .bind(vec![metadata.clone(); config.batch_size])
        .bind(correlation)
        .bind(slice)
        .execute(sandbox.pool())
        .await?;
    }
    let same_schema = per_second(total, started.elapsed());

    let loaded = tallies.load("t").await?;
    let expected_sum = config.batch_commands as i64 * size * (size + 1) / 2;
    check(
        loaded.version == total as u64 && loaded.state.sum == expected_sum,
        "batch append read back",
    )?;
    check(
        sandbox.raw_count().await? == total as i64,
        "batch baseline row count",
    )?;
    let copied: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}",
        sandbox.table("events_copy")
    ))
    .fetch_one(sandbox.pool())
    .await?;
    check(copied == total as i64, "same-schema baseline row count")?;
    sandbox.drop().await?;
    Ok(vec![
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "batch-append",
            framework,
            baseline,
            unit: "events/s",
            latency: None,
        },
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "batch-append-same-schema",
            framework,
            baseline: same_schema,
            unit: "events/s",
            latency: None,
        },
    ])
}

/// A projection catching up on a long log, against raw batched inserts of the
/// same read-model rows.
pub(crate) async fn projection_catch_up(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    // Set-up: the log, written in large appends to 100 streams.
    let streams = 100.min(config.catch_up_events.max(1));
    let per_stream = config.catch_up_events / streams;
    let total = sandbox.tally_log(streams, per_stream).await?;
    for table in ["rows_framework", "rows_baseline", "rows_hand_written"] {
        sqlx::query(&format!(
            "CREATE TABLE {} (event_id uuid PRIMARY KEY, stream text NOT NULL, n bigint NOT NULL)",
            sandbox.table(table)
        ))
        .execute(sandbox.pool())
        .await?;
    }
    // The baseline's rows, read before its clock starts: it only inserts.
    let filter = LogFilter::event_types(["Added"]);
    let mut rows = Vec::with_capacity(total);
    let mut after = Position::START;
    while rows.len() < total {
        let batch = sandbox.store.read_log(after, &filter, 5000).await?;
        let Some(last) = batch.last() else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        after = last.position;
        for stored in batch {
            let event = stored
                .decode::<TallyEvent>()
                .map_err(cqrskit::StoreError::from)?;
            let TallyEvent::Added(added) = event.payload;
            rows.push((event.event_id, event.stream.aggregate_id, added.n));
        }
    }

    let projector = Arc::new(TallyRows {
        table: sandbox.table("rows_framework"),
    });
    let runner =
        ProjectionRunner::new(sandbox.store.clone(), projector).with_options(RunnerOptions {
            batch_size: 1000,
            ..RunnerOptions::default()
        });
    if !runner.acquire_lease().await? {
        return Err(BenchError::Verification(
            "lease of a fresh projection is taken".into(),
        ));
    }
    let started = Instant::now();
    let mut applied = 0;
    while applied < total {
        applied += runner.catch_up().await?;
    }
    let framework = per_second(total, started.elapsed());

    let baseline_rows = TallyRows {
        table: sandbox.table("rows_baseline"),
    };
    let started = Instant::now();
    for chunk in rows.chunks(1000) {
        sqlx::query(&baseline_rows.insert_sql())
            .bind(chunk.iter().map(|row| row.0).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.1.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.2).collect::<Vec<_>>())
            .execute(sandbox.pool())
            .await?;
    }
    let baseline = per_second(total, started.elapsed());
    let hand_written = hand_written_catch_up(&sandbox, total).await?;

    for table in ["rows_framework", "rows_baseline", "rows_hand_written"] {
        let (count, sum): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT count(*), sum(n)::bigint FROM {}",
            sandbox.table(table)
        ))
        .fetch_one(sandbox.pool())
        .await?;
        let per = per_stream as i64;
        check(
            count == total as i64 && sum == Some(streams as i64 * per * (per + 1) / 2),
            format!("{table}: {count} rows, sum {sum:?}"),
        )?;
    }
    sandbox.drop().await?;
    Ok(vec![
        Report::new("projection-catch-up", framework, baseline, "events/s"),
        Report::new(
            "projection-catch-up-hand-written",
            framework,
            hand_written,
            "events/s",
        ),
    ])
}

/// What a careful program written straight on sqlx does to keep the same
/// read model: per batch of 1000, one transaction that reads the next
/// events of the type from the events table along its per-type log index
/// (no gap safety), decodes each payload with serde, inserts the rows and
/// moves its checkpoint. Returns events per second.
async fn hand_written_catch_up(sandbox: &Sandbox, total: usize) -> Result<f64> {
    let checkpoint = sandbox.table("hand_written_checkpoint");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {checkpoint} (name text PRIMARY KEY, transaction_id xid8 NOT NULL, position bigint NOT NULL);
         INSERT INTO {checkpoint} VALUES ('rows', '0', 0)"
    ))
    .execute(sandbox.pool())
    .await?;
    let rows = TallyRows {
        table: sandbox.table("rows_hand_written"),
    };
    let read = format!(
        "SELECT transaction_id::text AS tx, position, event_id, aggregate_id, payload::text FROM {}
         WHERE event_type = 'Added' AND (transaction_id, position) > ($1::text::xid8, $2)
         ORDER BY transaction_id, position LIMIT 1000",
        sandbox.table("events")
    );
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let mut tx = sandbox.pool().begin().await?;
        let (transaction, position): (String, i64) = sqlx::query_as(&format!(
            "SELECT transaction_id::text, position FROM {checkpoint} WHERE name = 'rows' FOR UPDATE"
        ))
        .fetch_one(&mut *tx)
        .await?;
        let batch: Vec<(String, i64, uuid::Uuid, String, String)> = sqlx::query_as(&read)
            .bind(transaction)
            .bind(position)
            .fetch_all(&mut *tx)
            .await?;
        let Some((last_transaction, last_position)) =
            batch.last().map(|row| (row.0.clone(), row.1))
        else {
            return Err(BenchError::Verification(format!(
                "hand-written catch-up found {done} of {total} events"
            )));
        };
        let mut ids = Vec::with_capacity(batch.len());
        let mut streams = Vec::with_capacity(batch.len());
        let mut numbers = Vec::with_capacity(batch.len());
        for (_, _, id, stream, payload) in &batch {
            let added: Added = serde_json::from_str(payload)
                .map_err(|error| BenchError::Verification(error.to_string()))?;
            ids.push(*id);
            streams.push(stream.as_str());
            numbers.push(added.n);
        }
        sqlx::query(&rows.insert_sql())
            .bind(ids)
            .bind(streams)
            .bind(numbers)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "UPDATE {checkpoint} SET transaction_id = $1::text::xid8, position = $2 WHERE name = 'rows'"
        ))
        .bind(last_transaction)
        .bind(last_position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += batch.len();
    }
    Ok(per_second(total, started.elapsed()))
}
