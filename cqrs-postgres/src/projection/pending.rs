//! Counting what a projection has still to apply: the runner's lag, its
//! lag gauge, and `cqrs-admin projections` ask the same question.

use cqrskit_core::Position;
use sqlx::{PgConnection, Row};

use super::projection_row::as_i64;
use crate::database::Database;

/// The events a projection has still to apply, and how old the oldest is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Pending {
    /// How many (at most the cap asked for).
    pub(crate) events: u64,
    /// The age of the oldest, in seconds; `None` when there is none.
    pub(crate) behind: Option<f64>,
}

/// What a projection reads: its event types (`None`: all) and its slices
/// (`None`: all).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reads<'a> {
    pub(crate) types: Option<&'a [String]>,
    pub(crate) slices: Option<(i16, i16)>,
}

/// The events of `events` (a table name) that `reads` selects after
/// `after`, counted up to `cap` (`None`: all of them; a far-behind
/// projection's count then reads every row it has to apply).
pub(crate) async fn count(
    database: &Database,
    connection: &mut PgConnection,
    events: &str,
    after: Position,
    reads: Reads<'_>,
    cap: Option<i64>,
) -> Result<Pending, sqlx::Error> {
    // language=SQL
    let row = database
        .query(&format!(
            "SELECT count(*) AS events,
                    extract(epoch FROM now() - min(recorded_at))::float8 AS behind
             FROM (SELECT recorded_at FROM {events}
                   WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)
                     AND ($3::text[] IS NULL OR event_type = ANY($3))
                     AND ($4::smallint IS NULL OR slice BETWEEN $4 AND $5)
                   ORDER BY transaction_id, position
                   LIMIT $6) AS pending"
        ))
        .bind(as_i64(after.transaction))
        .bind(as_i64(after.sequence))
        .bind(reads.types)
        .bind(reads.slices.map(|(first, _)| first))
        .bind(reads.slices.map(|(_, last)| last))
        .bind(cap)
        .fetch_one(connection)
        .await?;
    let events: i64 = row.try_get("events")?;
    Ok(Pending {
        events: events.max(0).unsigned_abs(),
        behind: row.try_get("behind")?,
    })
}
