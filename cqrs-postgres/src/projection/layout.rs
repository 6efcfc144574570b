//! A projection's layout: how many partitions it runs in (1: unpartitioned).
//!
//! The first runner of a projection records its count; every runner checks
//! it before it takes a lease, so runners configured differently (an
//! instance started with another partition count beside the running ones,
//! an unpartitioned runner of a partitioned projection, a rolling deploy
//! that changes the count) refuse to start instead of applying the same
//! events under other rows. Only a split moves it, and the split fences the
//! old rows (`PartitionedRunner::split_from`).

use sqlx::PgConnection;

use crate::database::Database;

/// Records `partitions` as the layout of `projection` unless one is
/// recorded; returns the recorded one. Two runners claiming at once agree:
/// the second waits on the first's key and reads what it recorded.
pub(crate) async fn claim(
    db: &Database,
    connection: &mut PgConnection,
    table: &str,
    projection: &str,
    partitions: u16,
) -> Result<u16, sqlx::Error> {
    // language=SQL
    db.query(&format!(
        "INSERT INTO {table} (projection, partitions) VALUES ($1, $2)
         ON CONFLICT (projection) DO NOTHING"
    ))
    .bind(projection)
    .bind(i32::from(partitions))
    .execute(&mut *connection)
    .await?;
    // language=SQL
    let recorded: i32 = db
        .query_scalar(&format!(
            "SELECT partitions FROM {table} WHERE projection = $1"
        ))
        .bind(projection)
        .fetch_one(&mut *connection)
        .await?;
    // The table's check keeps it within 1..=1024.
    Ok(u16::try_from(recorded).unwrap_or(u16::MAX))
}

/// Moves the layout of `projection` from `from` to `to` partitions (records
/// `to` when none is recorded); false when another layout is recorded.
pub(crate) async fn move_to(
    db: &Database,
    connection: &mut PgConnection,
    table: &str,
    projection: &str,
    from: u16,
    to: u16,
) -> Result<bool, sqlx::Error> {
    // language=SQL
    let moved = db
        .query(&format!(
            "INSERT INTO {table} AS layout (projection, partitions) VALUES ($1, $3)
             ON CONFLICT (projection) DO UPDATE SET partitions = $3, recorded_at = now()
             WHERE layout.partitions = $2"
        ))
        .bind(projection)
        .bind(i32::from(from))
        .bind(i32::from(to))
        .execute(&mut *connection)
        .await?;
    Ok(moved.rows_affected() == 1)
}
