//! A document read model catching up, against the hand-written SQL
//! projector of the same read model, both under the framework's runner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrskit::postgres::sqlx::{self, PgConnection, PgPool};
use cqrskit::postgres::{PgDocuments, ProjectionRunner, RunnerOptions};
use cqrskit::{
    BoxError, EventEnvelope, EventStore, ExpectedVersion, NewEvent, Projector, StreamId,
    async_trait, document,
};
use serde::{Deserialize, Serialize};

use super::{Result, Sandbox, check};
use crate::report::{Report, per_second};
use crate::tally::{Added, TallyEvent};
use crate::{BenchError, Config};

/// A tally's totals, as a document keyed by its stream.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct TallyView {
    count: i64,
    sum: i64,
    last: i64,
}

#[document(event = TallyEvent, name = "tally_views")]
impl TallyView {
    #[apply]
    fn added(&mut self, event: &Added) {
        self.count += 1;
        self.sum += event.n;
        self.last = event.n;
    }
}

/// The same read model written by hand, as a careful user does: a table
/// with a column per field, each batch folded per stream in memory and
/// written in one multi-row upsert that adds to what is there.
struct TallyTotals {
    name: String,
    table: String,
}

#[async_trait]
impl Projector<PgConnection> for TallyTotals {
    type Event = TallyEvent;

    fn name(&self) -> &str {
        &self.name
    }

    fn reads_metadata(&self) -> bool {
        false
    }

    async fn project(
        &self,
        event: &EventEnvelope<TallyEvent>,
        tx: &mut PgConnection,
    ) -> std::result::Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), tx).await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<TallyEvent>],
        tx: &mut PgConnection,
    ) -> std::result::Result<(), BoxError> {
        let mut totals: HashMap<&str, (i64, i64, i64)> = HashMap::new();
        for event in events {
            let TallyEvent::Added(added) = &event.payload;
            let entry = totals
                .entry(event.stream.aggregate_id.as_str())
                .or_default();
            *entry = (entry.0 + 1, entry.1 + added.n, added.n);
        }
        let mut ids = Vec::with_capacity(totals.len());
        let mut counts = Vec::with_capacity(totals.len());
        let mut sums = Vec::with_capacity(totals.len());
        let mut lasts = Vec::with_capacity(totals.len());
        for (id, (count, sum, last)) in totals {
            ids.push(id);
            counts.push(count);
            sums.push(sum);
            lasts.push(last);
        }
        sqlx::query(&format!(
            "INSERT INTO {table} AS t (id, count, sum, last) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET count = t.count + excluded.count, \
             sum = t.sum + excluded.sum, last = excluded.last",
            table = self.table
        ))
        .bind(ids)
        .bind(counts)
        .bind(sums)
        .bind(lasts)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Writes `per_stream` tally events to each of `streams` streams,
/// interleaved (appends of `chunk` events, one stream after another), so a
/// batch of the log touches many documents, as a busy service's does.
async fn interleaved_log(sandbox: &Sandbox, streams: usize, per_stream: usize) -> Result<usize> {
    let chunk = 20.min(per_stream.max(1));
    let mut written = vec![0_usize; streams];
    let mut n = 0_i64;
    while written.iter().any(|&done| done < per_stream) {
        for (stream, done) in written.iter_mut().enumerate() {
            let count = chunk.min(per_stream - *done);
            if count == 0 {
                continue;
            }
            let events = (0..count)
                .map(|_| {
                    n += 1;
                    NewEvent::from_event(&TallyEvent::Added(Added { n }), Default::default())
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(cqrskit::StoreError::from)?;
            let expected = if *done == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(*done as u64)
            };
            sandbox
                .store
                .append(
                    &StreamId::new("tally", format!("t{stream}")),
                    expected,
                    events,
                )
                .await?;
            *done += count;
        }
    }
    sandbox.analyze().await?;
    Ok(streams * per_stream)
}

async fn timed_catch_up<P>(sandbox: &Sandbox, projector: Arc<P>, total: usize) -> Result<Duration>
where
    P: Projector<PgConnection> + 'static,
{
    let runner = ProjectionRunner::new(sandbox.store.clone(), projector)
        .with_options(RunnerOptions::default().batch_size(1000));
    runner.setup().await?;
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
    Ok(started.elapsed())
}

/// The document projection's catch-up, against the hand-written one's, in
/// alternating rounds (hand-written, documents, documents, hand-written)
/// so that neither always runs on a warmer cache.
pub(crate) async fn document_catch_up(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let sandbox = Sandbox::new(pool).await?;
    let streams = 1000.min(config.catch_up_events.max(1));
    let per_stream = (config.catch_up_events / streams).max(1);
    let total = interleaved_log(&sandbox, streams, per_stream).await?;
    let mut documents = Duration::ZERO;
    let mut hand_written = Duration::ZERO;
    let mut checks = Vec::new();
    for (round, documents_first) in [(1, false), (2, true)] {
        let hand = TallyTotals {
            name: format!("tally_totals_{round}"),
            table: sandbox.table(&format!("tally_totals_{round}")),
        };
        sqlx::query(&format!(
            "CREATE TABLE {} (id text PRIMARY KEY, count bigint NOT NULL, sum bigint NOT NULL, last bigint NOT NULL)",
            hand.table
        ))
        .execute(sandbox.pool())
        .await?;
        checks.push(format!(
            "SELECT count(*), sum(count)::bigint, sum(sum)::bigint FROM {}",
            hand.table
        ));
        let docs = Arc::new(PgDocuments::<TallyView>::version(&sandbox.store, round));
        checks.push(format!(
            "SELECT count(*), sum((body->>'count')::bigint)::bigint, sum((body->>'sum')::bigint)::bigint FROM {}",
            docs.table()
        ));
        let hand = Arc::new(hand);
        if documents_first {
            documents += timed_catch_up(&sandbox, docs, total).await?;
            hand_written += timed_catch_up(&sandbox, hand, total).await?;
        } else {
            hand_written += timed_catch_up(&sandbox, hand, total).await?;
            documents += timed_catch_up(&sandbox, docs, total).await?;
        }
    }
    let expected_sum = (total as i64) * (total as i64 + 1) / 2;
    for sql in checks {
        let (rows, count, sum): (i64, Option<i64>, Option<i64>) =
            sqlx::query_as(&sql).fetch_one(sandbox.pool()).await?;
        check(
            rows == streams as i64 && count == Some(total as i64) && sum == Some(expected_sum),
            format!("{sql}: {rows} rows, count {count:?}, sum {sum:?}"),
        )?;
    }
    sandbox.drop().await?;
    Ok(vec![Report::new(
        "document-catch-up",
        per_second(2 * total, documents),
        per_second(2 * total, hand_written),
        "events/s",
    )])
}
