//! Commands that append many events each.

use std::time::Instant;

use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::{CommandPipeline, PipelineOptions, StreamId};

use super::{Result, Sandbox, check};
use crate::Config;
use crate::report::{Report, per_second};
use crate::tally::{AddMany, Tally};

/// Commands that each append a batch of events, against raw multi-row
/// inserts: into the minimal raw table (the physical limit), and into a table
/// with the events table's own columns, defaults and indexes (so the ratio
/// shows the framework's own overhead apart from the schema's cost).
pub(crate) async fn batch_append(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    let tallies = CommandPipeline::<Tally>::new(sandbox.shared(), ())
        .with_options(PipelineOptions::default().state_cache(16));
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
    let slice = StreamId::new("tally", "t").slice() as i16;
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
