//! Commands: one aggregate after another, and many aggregates at once.

use cqrskit::postgres::StoreOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::{CommandPipeline, EventStore, PipelineOptions, SnapshotPolicy, StreamId};

use super::{Result, Sandbox, check};
use crate::report::{Latency, Report, per_second, quantile};
use crate::{BenchError, Config};

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
        // The cache is on by default; the uncached rows turn it off.
        let accounts = CommandPipeline::<BankAccount>::new(sandbox.shared(), ()).with_options(
            PipelineOptions::default()
                .snapshots(snapshots)
                .state_cache(if cache { 16 } else { 0 }),
        );
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
    let store: Arc<dyn EventStore> = Arc::new(
        sandbox
            .store
            .clone()
            .with_options(StoreOptions::default().group_commit(None)),
    );
    let framework = deposits_from_tasks(store.clone(), config).await?;
    let total = config.aggregates * config.commands_per_aggregate;

    let (baseline, _) = raw_concurrent(&sandbox, config).await?;

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
                    .bind(StreamId::new("account", format!("acc-{account}")).slice() as i16)
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
        CommandPipeline::<BankAccount>::new(store.clone(), ())
            .with_options(PipelineOptions::default().state_cache(config.aggregates)),
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
/// the same number of tasks, into the minimal table. Returns rows per second
/// and each insert's latency.
pub(crate) async fn raw_concurrent(
    sandbox: &Sandbox,
    config: &Config,
) -> Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let pool = sandbox.pool().clone();
        let table = sandbox.table("raw_events");
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for round in 0..config.commands_per_aggregate {
                for account in (task..config.aggregates).step_by(config.tasks) {
                    let insert = Instant::now();
                    sqlx::query(&format!(
                        "INSERT INTO {table} (stream, version, payload) VALUES ($1, $2, $3::jsonb)"
                    ))
                    .bind(format!("acc-{account}"))
                    .bind(round as i64 + 1)
                    .bind(r#"{"amount":1}"#)
                    .execute(&pool)
                    .await?;
                    latencies.push(insert.elapsed());
                }
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(BenchError::task)??);
    }
    let rate = per_second(
        config.aggregates * config.commands_per_aggregate,
        started.elapsed(),
    );
    Ok((rate, latencies))
}
