//! An append's events as the column arrays its statement unnests: built
//! once per append, bound to whichever statement writes it (alone, with a
//! snapshot, or in a group with other appends: [`GroupColumns`]).

use cqrskit_core::{NewEvent, Snapshot, StoreError, StreamId};
use uuid::Uuid;

/// The batch as the column arrays the append statement unnests.
pub(crate) struct Batch {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) types: Vec<String>,
    pub(crate) versions: Vec<i32>,
    pub(crate) payloads: Vec<String>,
    pub(crate) metadata: Vec<String>,
    /// Each event's correlation id, stored in a column of its own for the
    /// audit index (the database no longer derives it from the metadata).
    pub(crate) correlations: Vec<Option<Uuid>>,
    /// The stream's slice ([`StreamId::slice`]).
    pub(crate) slice: i16,
    /// The aggregate's state after the batch, saved with it.
    pub(crate) snapshot: Option<Snapshot>,
}

impl Batch {
    /// Binds the batch's columns, in the order both append statements
    /// unnest them, after the parameters `query` already has.
    pub(crate) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .bind(&self.correlations)
            .bind(self.slice)
    }

    /// Binds the snapshot's columns, when the batch has one, after the
    /// batch's (see `Statements::append_at_with_snapshot`).
    pub(crate) fn bind_snapshot<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let Some(snapshot) = &self.snapshot else {
            return query;
        };
        query
            .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
            .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
            .bind(snapshot.state.get())
            .bind(snapshot.taken_at)
    }

    pub(crate) fn new(stream: &StreamId, events: &[NewEvent]) -> Result<Self, StoreError> {
        let mut batch = Batch {
            ids: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            correlations: Vec::with_capacity(events.len()),
            // Below 1024.
            slice: stream.slice() as i16,
            snapshot: None,
        };
        for event in events {
            batch.ids.push(event.event_id);
            batch.correlations.push(event.metadata.correlation_id);
            batch.types.push(event.event_type.clone());
            // `limits::check_append` refused versions past the column's range.
            batch
                .versions
                .push(i32::try_from(event.event_version).unwrap_or(i32::MAX));
            batch.payloads.push(event.payload.get().to_owned());
            batch
                .metadata
                .push(serde_json::to_string(&event.metadata).map_err(|error| {
                    StoreError::Backend(format!("cannot serialize metadata: {error}").into())
                })?);
        }
        Ok(batch)
    }
}

/// A group's appends as the column arrays `Statements::append_group`
/// unnests: one element per event, `slot` naming its append.
pub(crate) struct GroupColumns<'a> {
    slots: Vec<i32>,
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    event_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
    correlations: Vec<Option<Uuid>>,
    slices: Vec<i16>,
}

impl<'a> GroupColumns<'a> {
    /// The columns of `appends`: each a stream, the version its batch
    /// follows, and the batch; the slot of each is its place in the list.
    pub(crate) fn new<I>(appends: I) -> Self
    where
        I: Iterator<Item = (&'a StreamId, u64, &'a Batch)> + Clone,
    {
        let events: usize = appends.clone().map(|(_, _, batch)| batch.ids.len()).sum();
        let mut columns = GroupColumns {
            slots: Vec::with_capacity(events),
            aggregate_types: Vec::with_capacity(events),
            aggregate_ids: Vec::with_capacity(events),
            versions: Vec::with_capacity(events),
            ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            event_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            correlations: Vec::with_capacity(events),
            slices: Vec::with_capacity(events),
        };
        for (slot, (stream, after, batch)) in appends.enumerate() {
            for index in 0..batch.ids.len() {
                columns.slots.push(i32::try_from(slot).unwrap_or(i32::MAX));
                columns.aggregate_types.push(&stream.aggregate_type);
                columns.aggregate_ids.push(&stream.aggregate_id);
                let version = after + 1 + index as u64;
                columns
                    .versions
                    .push(i64::try_from(version).unwrap_or(i64::MAX));
                columns.ids.push(batch.ids[index]);
                columns.types.push(&batch.types[index]);
                columns.event_versions.push(batch.versions[index]);
                columns.payloads.push(&batch.payloads[index]);
                columns.metadata.push(&batch.metadata[index]);
                columns.correlations.push(batch.correlations[index]);
                columns.slices.push(batch.slice);
            }
        }
        columns
    }

    /// Binds the columns, in the order the group statement unnests them,
    /// after the parameters `query` already has.
    pub(crate) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.slots)
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.versions)
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.event_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .bind(&self.correlations)
            .bind(&self.slices)
    }
}
