//! Turning result rows back into stored events; a malformed row becomes a
//! typed error naming where it is, never a panic.

use chrono::{DateTime, Utc};
use cqrskit_core::{
    EventEnvelope, Metadata, Position, ReplayEvent, Snapshot, StoreError, StoredEvent, StreamId,
};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::store_error;

/// Reads a row of the event columns (see `schema::EVENT_COLUMNS`).
///
/// Columns are read by index and without sqlx's per-column type check: this
/// runs for every event a projection reads, the statements are ours and cast
/// every column, and the decoders still refuse a value of the wrong size or
/// encoding.
pub(crate) fn event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let position: i64 = row.try_get_unchecked(0).map_err(store_error)?;
    let transaction: i64 = row.try_get_unchecked(1).map_err(store_error)?;
    let stream = StreamId::new(
        row.try_get_unchecked::<String, _>(3).map_err(store_error)?,
        row.try_get_unchecked::<String, _>(4).map_err(store_error)?,
    );
    let version: i64 = row.try_get_unchecked(5).map_err(store_error)?;
    let corrupted = |reason: String| StoreError::Corrupted {
        location: format!("event at position {position} (version {version} of stream {stream})"),
        reason,
    };
    let event_version: i32 = row.try_get_unchecked(7).map_err(store_error)?;
    let payload: String = row.try_get_unchecked(8).map_err(store_error)?;
    let payload = RawValue::from_string(payload)
        .map_err(|error| corrupted(format!("payload is not JSON: {error}")))?;
    let metadata: &str = row.try_get_unchecked(9).map_err(store_error)?;
    let metadata: Metadata = serde_json::from_str(metadata).map_err(|error| {
        corrupted(format!(
            "metadata does not match the metadata format: {error}"
        ))
    })?;
    let recorded_at: DateTime<Utc> = row.try_get_unchecked(10).map_err(store_error)?;
    Ok(EventEnvelope {
        event_id: row.try_get_unchecked(2).map_err(store_error)?,
        version: to_u64(version, "version").map_err(corrupted)?,
        position: Position::new(
            to_u64(transaction, "transaction id").map_err(corrupted)?,
            to_u64(position, "position").map_err(corrupted)?,
        ),
        event_type: row.try_get_unchecked(6).map_err(store_error)?,
        event_version: u32::try_from(event_version)
            .map_err(|_| corrupted(format!("negative event version {event_version}")))?,
        payload,
        metadata,
        recorded_at,
        stream,
    })
}

/// A row of the global log as a runner reads it: an event, or one that
/// cannot be read, kept in its place so the runner can apply the events
/// before it and hand it to the projection's failure policy.
#[derive(Debug)]
pub(crate) enum LogRow {
    Readable(StoredEvent),
    Unreadable {
        /// What could be read of it (its place and identity; an empty
        /// payload and metadata).
        event: StoredEvent,
        /// The error reading it gave.
        error: StoreError,
    },
}

impl LogRow {
    /// The event, or what is known of an unreadable one.
    pub(crate) fn event(&self) -> &StoredEvent {
        match self {
            LogRow::Readable(event) | LogRow::Unreadable { event, .. } => event,
        }
    }

    /// The event, or the error reading it gave.
    pub(crate) fn into_event(self) -> Result<StoredEvent, StoreError> {
        match self {
            LogRow::Readable(event) => Ok(event),
            LogRow::Unreadable { error, .. } => Err(error),
        }
    }
}

/// Reads a row of the event columns into a [`LogRow`]: a row that is
/// corrupted (bad metadata, a negative version, ...) but whose place and
/// identity can be read is kept as unreadable; one without even those is an
/// error.
pub(crate) fn log_row(row: &PgRow) -> Result<LogRow, StoreError> {
    let error = match event(row) {
        Ok(event) => return Ok(LogRow::Readable(event)),
        Err(error @ StoreError::Corrupted { .. }) => error,
        Err(other) => return Err(other),
    };
    let identity = || -> Result<StoredEvent, sqlx::Error> {
        let position: i64 = row.try_get(0)?;
        let transaction: i64 = row.try_get(1)?;
        let version: i64 = row.try_get(5)?;
        Ok(EventEnvelope {
            event_id: row.try_get(2)?,
            stream: StreamId::new(row.try_get::<String, _>(3)?, row.try_get::<String, _>(4)?),
            version: version.max(0).unsigned_abs(),
            position: Position::new(
                transaction.max(0).unsigned_abs(),
                position.max(0).unsigned_abs(),
            ),
            event_type: row.try_get(6)?,
            event_version: 0,
            payload: RawValue::from_string("null".to_owned())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            metadata: Metadata::default(),
            recorded_at: row.try_get(10)?,
        })
    };
    match identity() {
        Ok(event) => Ok(LogRow::Unreadable { event, error }),
        Err(_) => Err(error),
    }
}

/// A row of the replay statement.
pub(crate) enum ReplayRow<'r> {
    /// The stream's snapshot.
    Snapshot(Snapshot),
    /// An event, borrowed from the row.
    Event(ReplayEvent<'r>),
}

/// Reads a row of the replay columns (version, event_type, event_version,
/// payload, taken_at): a snapshot when `event_type` is null, else an event.
pub(crate) fn replay_row<'r>(
    row: &'r PgRow,
    stream: &StreamId,
) -> Result<ReplayRow<'r>, StoreError> {
    // By index and unchecked, as in `event`.
    let version: i64 = row.try_get_unchecked(0).map_err(store_error)?;
    let event_type: Option<&str> = row.try_get_unchecked(1).map_err(store_error)?;
    let schema_version: i32 = row.try_get_unchecked(2).map_err(store_error)?;
    let payload: &str = row.try_get_unchecked(3).map_err(store_error)?;
    let corrupted = |reason: String| StoreError::Corrupted {
        location: format!("version {version} of stream {stream}"),
        reason,
    };
    let version = to_u64(version, "version").map_err(corrupted)?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| corrupted(format!("negative schema version {schema_version}")))?;
    let Some(event_type) = event_type else {
        let state = RawValue::from_string(payload.to_owned())
            .map_err(|error| corrupted(format!("snapshot state is not JSON: {error}")))?;
        return Ok(ReplayRow::Snapshot(Snapshot {
            stream: stream.clone(),
            version,
            schema_version,
            state,
            taken_at: row.try_get(4).map_err(store_error)?,
        }));
    };
    // The payload is not checked for JSON here: decoding reads it as JSON
    // anyway, and checking first would parse it twice.
    Ok(ReplayRow::Event(ReplayEvent {
        version,
        event_type,
        event_version: schema_version,
        payload,
    }))
}

/// A non-negative database integer as `u64`.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("negative {what} {value}"))
}

/// A `u64` from the API as a database `bigint`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Backend(format!("{what} {value} exceeds the database's bigint range").into())
    })
}
