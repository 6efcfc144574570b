//! A projection's checkpoint, read under a row lock and moved by
//! compare-and-set in the transaction that applied the events.

use cqrskit_core::Position;
use sqlx::{PgConnection, Row};

use crate::database::Database;

/// The projection's row, locked for the rest of the transaction.
#[derive(Debug)]
pub(crate) struct Locked {
    pub(crate) checkpoint: Position,
    pub(crate) owner: Option<String>,
    pub(crate) token: i64,
    pub(crate) lease_valid: bool,
    pub(crate) stop_reason: Option<String>,
    /// The event types recorded as the projection's subscription.
    pub(crate) event_types: Option<Vec<String>>,
}

async fn select(
    db: &Database,
    connection: &mut PgConnection,
    table: &str,
    name: &str,
    locking: &str,
) -> Result<Option<Locked>, sqlx::Error> {
    // language=SQL
    let row = db.query(&format!(
        "SELECT checkpoint_transaction, checkpoint_sequence, owner, fencing_token,
                coalesce(lease_expires_at >= now(), false) AS lease_valid,
                CASE WHEN stopped_at IS NULL THEN NULL ELSE coalesce(stop_reason, '') END AS stop_reason,
                event_types
         FROM {table} WHERE name = $1 {locking}"
    ))
    .bind(name)
    .fetch_optional(&mut *connection)
    .await?;
    row.map(|row| {
        Ok(Locked {
            checkpoint: position(&row, "checkpoint_transaction", "checkpoint_sequence")?,
            owner: row.try_get("owner")?,
            token: row.try_get("fencing_token")?,
            lease_valid: row.try_get("lease_valid")?,
            stop_reason: row.try_get("stop_reason")?,
            event_types: row.try_get("event_types")?,
        })
    })
    .transpose()
}

fn position(
    row: &sqlx::postgres::PgRow,
    transaction: &str,
    sequence: &str,
) -> Result<Position, sqlx::Error> {
    let transaction: i64 = row.try_get(transaction)?;
    let sequence: i64 = row.try_get(sequence)?;
    Ok(Position::new(
        transaction.max(0).unsigned_abs(),
        sequence.max(0).unsigned_abs(),
    ))
}

/// Positions come from bigint columns, so they fit.
pub(crate) fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A projection's row in the projections table, seen for its checkpoint.
#[derive(Clone, Copy)]
pub(crate) struct CheckpointRow<'a> {
    pub(crate) db: &'a Database,
    pub(crate) table: &'a str,
    pub(crate) name: &'a str,
}

impl CheckpointRow<'_> {
    /// Creates the projection's row (at the start of the log, unowned) if it
    /// does not exist yet.
    pub(crate) async fn ensure(&self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        db.query(&format!(
            "INSERT INTO {table} (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
        ))
        .bind(name)
        .execute(connection)
        .await
        .map(|_| ())
    }

    /// Locks the projection's row (`FOR UPDATE`): two runners cannot both be
    /// between reading and moving the checkpoint.
    pub(crate) async fn lock(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Option<Locked>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        select(db, connection, table, name, "FOR UPDATE").await
    }

    /// The projection's row as it is, without locking it (for reports).
    pub(crate) async fn peek(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Option<Locked>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        select(db, connection, table, name, "").await
    }

    /// Moves the checkpoint from `from` to `to` if it is still at `from` and the
    /// fencing token still `token`; false when another runner got there first.
    pub(crate) async fn advance(
        &self,
        connection: &mut PgConnection,
        from: Position,
        to: Position,
        token: i64,
    ) -> Result<bool, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        let result = db
            .query(&format!(
                "UPDATE {table}
             SET checkpoint_transaction = $4, checkpoint_sequence = $5, updated_at = now()
             WHERE name = $1 AND checkpoint_transaction = $2 AND checkpoint_sequence = $3
               AND fencing_token = $6"
            ))
            .bind(name)
            .bind(as_i64(from.transaction))
            .bind(as_i64(from.sequence))
            .bind(as_i64(to.transaction))
            .bind(as_i64(to.sequence))
            .bind(token)
            .execute(&mut *connection)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The checkpoint as committed (START for a projection that never ran).
    pub(crate) async fn read(&self) -> Result<Position, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let mut session = db.session().await?;
        // language=SQL
        let row = db
            .query(&format!(
                "SELECT checkpoint_transaction, checkpoint_sequence FROM {table} WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.map_or(Ok(Position::START), |row| {
            position(&row, "checkpoint_transaction", "checkpoint_sequence")
        })
    }
}
