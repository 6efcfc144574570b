//! A projection catching up on a long log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::postgres::{ProjectionRunner, RunnerOptions};
use cqrskit::{EventStore, LogFilter, Position};

use super::{Result, Sandbox, check};
use crate::report::{Report, per_second};
use crate::tally::{Added, TallyEvent, TallyRows};
use crate::{BenchError, Config};

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
        name: "tally_rows".to_owned(),
        table: sandbox.table("rows_framework"),
    });
    let runner = ProjectionRunner::new(sandbox.store.clone(), projector)
        .with_options(RunnerOptions::default().batch_size(1000));
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
        name: "tally_rows".to_owned(),
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
        name: "tally_rows".to_owned(),
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
