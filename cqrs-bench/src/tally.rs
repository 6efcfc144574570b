//! A bench-only domain: a tally that adds many numbers per command, and a
//! read model that writes each batch of events in one statement.

use cqrskit::postgres::sqlx::{self, PgConnection};
use cqrskit::{BoxError, Command, DomainEvent, EventEnvelope, Projector, aggregate, async_trait};
use serde::{Deserialize, Serialize};

/// A number was added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Added {
    /// The number.
    pub(crate) n: i64,
}

/// The tally's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub(crate) enum TallyEvent {
    /// See [`Added`].
    Added(Added),
}

/// Add `count` numbers, 1 to `count`, as `count` events.
#[derive(Debug, Clone)]
pub(crate) struct AddMany {
    /// How many events.
    pub(crate) count: i64,
}

/// The tally's commands.
#[derive(Command)]
pub(crate) enum TallyCommand {
    /// See [`AddMany`].
    AddMany(AddMany),
}

/// Never returned; the tally accepts everything.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub(crate) struct Never;

/// A running sum.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// The sum so far.
    pub(crate) sum: i64,
}

#[aggregate(type = "tally", command = TallyCommand, event = TallyEvent, error = Never)]
impl Tally {
    #[command]
    fn add_many(&self, command: &AddMany) -> Result<Vec<TallyEvent>, Never> {
        Ok((1..=command.count).map(|n| Added { n }.into()).collect())
    }

    #[apply]
    fn added(&mut self, event: &Added) {
        self.sum += event.n;
    }
}

/// Writes one row per event into `<table>`: (event_id, stream, n), a batch at a time.
pub(crate) struct TallyRows {
    /// The projection's name.
    pub(crate) name: String,
    /// The schema-qualified table.
    pub(crate) table: String,
}

impl TallyRows {
    /// The statement that writes rows, shared with the raw baseline so both
    /// write exactly the same way.
    pub(crate) fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} (event_id, stream, n) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])",
            self.table
        )
    }
}

#[async_trait]
impl Projector<PgConnection> for TallyRows {
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
    ) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), tx).await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<TallyEvent>],
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        let mut ids = Vec::with_capacity(events.len());
        let mut streams = Vec::with_capacity(events.len());
        let mut numbers = Vec::with_capacity(events.len());
        for event in events {
            let TallyEvent::Added(added) = &event.payload;
            ids.push(event.event_id);
            streams.push(event.stream.aggregate_id.clone());
            numbers.push(added.n);
        }
        sqlx::query(&self.insert_sql())
            .bind(ids)
            .bind(streams)
            .bind(numbers)
            .execute(tx)
            .await?;
        Ok(())
    }
}
