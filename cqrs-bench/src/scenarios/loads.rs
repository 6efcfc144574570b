//! Rebuilding an aggregate from a long stream, with and without a snapshot.

use std::time::{Duration, Instant};

use cqrs_examples::bank_account::{AccountEvent, BankAccount, Deposit, DepositMade};
use cqrskit::postgres::PostgresEventStore;
use cqrskit::postgres::sqlx::{self, PgPool, Row};
use cqrskit::{
    Aggregate, CommandPipeline, EventStore, ExpectedVersion, Metadata, NewEvent, PipelineOptions,
    SnapshotPolicy, StreamId,
};

use super::{Result, Sandbox, check};
use crate::report::{Latency, Report, quantile};
use crate::{BenchError, Config};

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
/// and decode of the payloads alone, and against a careful hand-written load
/// (see [`hand_written_load`]); then one more command with a snapshot.
pub(crate) async fn long_stream_load(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    long_stream(&sandbox.store, "long", config.long_stream).await?;
    sandbox.analyze().await?;
    let accounts = CommandPipeline::<BankAccount>::new(sandbox.shared(), ());

    // The best of several interleaved rounds: each load takes milliseconds,
    // and one unlucky scheduling would otherwise decide the ratio.
    const ROUNDS: usize = 9;
    let mut framework = Duration::MAX;
    let mut baseline = Duration::MAX;
    let mut hand_written = Duration::MAX;
    let events = config.long_stream as u64 + 1;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let loaded = accounts.load("long").await?;
        framework = framework.min(started.elapsed());
        check(
            loaded.state.balance == config.long_stream as u64 && loaded.version == events,
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

        let started = Instant::now();
        let (version, account) = hand_written_load(&sandbox, "long").await?;
        hand_written = hand_written.min(started.elapsed());
        check(
            account.balance == config.long_stream as u64 && version == events,
            format!(
                "hand-written load: balance {} at version {version}",
                account.balance
            ),
        )?;
    }

    // With a snapshot every command, loading reads one row and no events.
    let snapshotted = CommandPipeline::<BankAccount>::new(sandbox.shared(), ()).with_options(
        PipelineOptions::default()
            .snapshots(SnapshotPolicy::Every(1))
            .state_cache(0),
    );
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
        Report::new(
            "long-stream-load-hand-written",
            ms(framework),
            ms(hand_written),
            "ms",
        ),
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

/// What a careful program written straight on sqlx reads to rebuild an
/// account from the events table: the version (its next append's
/// expectation), the event type (to pick the variant) and the payload,
/// decoded by serde into the variant the type names and folded by the
/// domain's own `apply`. It reads no schema version and no snapshot, so it
/// can neither upcast nor skip events: the least a load can do.
async fn hand_written_load(sandbox: &Sandbox, id: &str) -> Result<(u64, BankAccount)> {
    let rows = sqlx::query(&format!(
        "SELECT version, event_type, payload::text FROM {}
         WHERE aggregate_type = 'account' AND aggregate_id = $1 ORDER BY version",
        sandbox.table("events")
    ))
    .bind(id)
    .fetch_all(sandbox.pool())
    .await?;
    let mut account = BankAccount::default();
    let mut version = 0;
    for row in &rows {
        let event_type: &str = row.try_get(1)?;
        let payload: &str = row.try_get(2)?;
        let event = match event_type {
            "AccountOpened" => AccountEvent::AccountOpened(serde_json::from_str(payload)?),
            "DepositMade" => AccountEvent::DepositMade(serde_json::from_str(payload)?),
            "WithdrawalMade" => AccountEvent::WithdrawalMade(serde_json::from_str(payload)?),
            other => {
                return Err(BenchError::Verification(format!(
                    "hand-written load: unknown event type {other}"
                )));
            }
        };
        account.apply(&event);
        version = row.try_get::<i64, _>(0)?.unsigned_abs();
    }
    Ok((version, account))
}
