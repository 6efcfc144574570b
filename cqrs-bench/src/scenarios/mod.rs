//! The scenarios. Each runs the framework and its raw-SQL baseline on the same
//! database in the same process, then checks that what was written reads back
//! right, so a fast wrong answer cannot pass.
//!
//! One module per kind of work: [`commands`] (one aggregate after another,
//! and many at once), [`loads`] (rebuilding an aggregate from a long
//! stream), [`batch`] (commands that append many events), [`catch_up`]
//! (a projection reading a long log) and [`documents`] (a document read
//! model catching up, against the same read model written by hand).

mod batch;
mod catch_up;
mod commands;
mod documents;
mod loads;

pub(crate) use batch::batch_append;
pub(crate) use catch_up::projection_catch_up;
pub(crate) use commands::{concurrent_commands, raw_concurrent, seq_command};
pub(crate) use documents::document_catch_up;
pub(crate) use loads::{long_stream, long_stream_load};

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrskit::postgres::PostgresEventStore;
use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::{CommandPipeline, EventStore};

use crate::BenchError;
use crate::tally::{AddMany, Tally};

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
