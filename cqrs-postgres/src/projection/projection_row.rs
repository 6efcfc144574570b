//! A projection's row in the projections table: its checkpoint, read under
//! a row lock and moved by compare-and-set in the transaction that applied
//! the events; its lease, one active runner per projection across
//! processes; its stop, its subscription and the operator's requests.
//!
//! The lease records the owner, when it expires (by the database's clock,
//! so application clocks may disagree) and a fencing token that every
//! takeover increments. A runner checks owner and token under the row lock
//! in the same transaction that moves the checkpoint, so a runner that lost
//! its lease cannot apply a batch, however late it notices.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrskit_core::Position;
use sqlx::{PgConnection, Row};

use crate::database::Database;

/// A projection's row: a view of the database, the projections table and
/// the row's name, made on the spot by whoever owns those names.
#[derive(Clone, Copy)]
pub(crate) struct ProjectionRow<'a> {
    pub(crate) db: &'a Database,
    pub(crate) table: &'a str,
    pub(crate) name: &'a str,
}

impl ProjectionRow<'_> {
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

    /// Takes the lease of `name` for `owner`, if it is free, expired, or already
    /// `owner`'s. Creates the projection's row on first use. Never waits: while
    /// another runner's transaction holds the row (it is applying a batch, or it
    /// froze in one and the server has not ended its session yet), the lease is
    /// not taken this time.
    pub(crate) async fn acquire(
        &self,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Acquired>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // Before the statements: the database's expiry counts from a moment
        // no earlier than this.
        let asked = std::time::Instant::now();
        let mut session = db.session().await?;
        ProjectionRow { db, table, name }
            .ensure(&mut session)
            .await?;
        // language=SQL
        // The row as it was (locked, or skipped while another runner's
        // transaction holds it) tells who held the lease before.
        let row = db
            .query(&format!(
                "WITH before AS (
                     SELECT name, owner FROM {table} WHERE name = $1 FOR UPDATE SKIP LOCKED
                 )
                 UPDATE {table} p
                 SET owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                     fencing_token = p.fencing_token + 1, updated_at = now()
                 FROM before
                 WHERE p.name = before.name
                   AND (p.owner IS NULL OR p.owner = $2 OR p.lease_expires_at < now())
                 RETURNING p.fencing_token, before.owner AS previous_owner"
            ))
            .bind(name)
            .bind(owner)
            .bind(duration.as_secs_f64())
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.map(|row| {
            Ok(Acquired {
                lease: lease(&row, asked, duration)?,
                previous_owner: row.try_get("previous_owner")?,
            })
        })
        .transpose()
    }

    /// Extends `owner`'s lease; `None` when it was taken over meanwhile. A lease
    /// that lapsed but that nobody took (the token is unchanged) is still
    /// `owner`'s to extend: a takeover always changes the token.
    pub(crate) async fn renew(
        &self,
        owner: &str,
        token: i64,
        duration: Duration,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let asked = std::time::Instant::now();
        let mut session = db.session().await?;
        // language=SQL
        let row = db
            .query(&format!(
                "UPDATE {table}
             SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE name = $1 AND owner = $2 AND fencing_token = $3
             RETURNING fencing_token"
            ))
            .bind(name)
            .bind(owner)
            .bind(token)
            .bind(duration.as_secs_f64())
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.map(|row| lease(&row, asked, duration)).transpose()
    }

    /// The lease's current holder, if a runner holds an unexpired one.
    pub(crate) async fn holder(&self) -> Result<Option<LeaseHolder>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let mut session = db.session().await?;
        // language=SQL
        let row = db
            .query(&format!(
                "SELECT owner, lease_expires_at FROM {table}
                 WHERE name = $1 AND owner IS NOT NULL AND lease_expires_at > now()"
            ))
            .bind(name)
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.map(|row| {
            Ok(LeaseHolder {
                owner: row.try_get("owner")?,
                expires_at: row.try_get("lease_expires_at")?,
            })
        })
        .transpose()
    }

    /// Gives the lease up, so another runner need not wait for it to expire.
    pub(crate) async fn release(&self, owner: &str, token: i64) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let mut session = db.session().await?;
        // language=SQL
        db.query(&format!(
            "UPDATE {table} SET owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE name = $1 AND owner = $2 AND fencing_token = $3"
        ))
        .bind(name)
        .bind(owner)
        .bind(token)
        .execute(&mut *session)
        .await?;
        session.finish().await
    }

    /// Records that the projection stopped, and why: it stays stopped
    /// (across restarts) until it is resumed.
    pub(crate) async fn stop(
        &self,
        connection: &mut PgConnection,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        db.query(&format!(
            "UPDATE {table} SET stopped_at = now(), stop_reason = $2, updated_at = now() WHERE name = $1"
        ))
        .bind(name)
        .bind(reason)
        .execute(connection)
        .await
        .map(drop)
    }

    /// Clears a stop: the projection goes on. `false` when the projection
    /// has no row.
    pub(crate) async fn clear_stop(
        &self,
        connection: &mut PgConnection,
    ) -> Result<bool, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        let cleared = db
            .query(&format!(
                "UPDATE {table} SET stopped_at = NULL, stop_reason = NULL, updated_at = now() WHERE name = $1"
            ))
            .bind(name)
            .execute(connection)
            .await?;
        Ok(cleared.rows_affected() == 1)
    }

    /// Records an operator's `request` (as stored) for the runner, in place
    /// of any earlier one. `false` when the projection has no row.
    pub(crate) async fn request(
        &self,
        connection: &mut PgConnection,
        request: &str,
    ) -> Result<bool, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        let recorded = db
            .query(&format!(
                "UPDATE {table} SET requested = $2, requested_at = now(), request_error = NULL,
                                  request_failures = 0
                 WHERE name = $1"
            ))
            .bind(name)
            .bind(request)
            .execute(connection)
            .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// Withdraws the waiting request: `None` when the projection has no
    /// row, else the request it had (as stored), if any.
    pub(crate) async fn withdraw_request(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Option<Option<String>>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        let row = db
            .query(&format!(
                "UPDATE {table} AS p SET requested = NULL, requested_at = NULL, request_error = NULL,
                                        request_failures = 0
                 FROM (SELECT name, requested FROM {table} WHERE name = $1 FOR UPDATE) AS before
                 WHERE p.name = before.name
                 RETURNING before.requested"
            ))
            .bind(name)
            .fetch_optional(connection)
            .await?;
        row.map(|row| row.try_get("requested")).transpose()
    }

    /// The operator's request recorded on the row, if any (as stored).
    pub(crate) async fn requested(&self) -> Result<Option<String>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let mut session = db.session().await?;
        // language=SQL
        let row = db
            .query(&format!("SELECT requested FROM {table} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        Ok(row.and_then(|row| row.get::<Option<String>, _>("requested")))
    }

    /// Records why `request` failed, if it is still the one recorded.
    pub(crate) async fn record_request_failure(
        &self,
        request: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        let mut session = db.session().await?;
        // language=SQL
        db.query(&format!(
            "UPDATE {table} SET request_error = $3, request_failures = request_failures + 1
             WHERE name = $1 AND requested = $2"
        ))
        .bind(name)
        .bind(request)
        .bind(error)
        .execute(&mut *session)
        .await?;
        session.finish().await
    }

    /// Clears `request` if it is still the one recorded.
    pub(crate) async fn clear_request(
        &self,
        connection: &mut PgConnection,
        request: &str,
    ) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        db.query(&format!(
            "UPDATE {table} SET requested = NULL, requested_at = NULL,
                           request_error = NULL, request_failures = 0
             WHERE name = $1 AND requested = $2"
        ))
        .bind(name)
        .bind(request)
        .execute(connection)
        .await
        .map(drop)
    }

    /// Records `types` as the event types the projection subscribes to.
    pub(crate) async fn record_subscription(
        &self,
        connection: &mut PgConnection,
        types: &[String],
    ) -> Result<(), sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // language=SQL
        db.query(&format!(
            "UPDATE {table} SET event_types = $2, updated_at = now() WHERE name = $1"
        ))
        .bind(name)
        .bind(types)
        .execute(connection)
        .await
        .map(drop)
    }
}
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

/// Who holds a projection's lease, and until when (by the database's
/// clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's owner name ([`ProjectionRunner::with_owner`](crate::projection::ProjectionRunner::with_owner)).
    pub owner: String,
    /// When the lease lapses unless its holder renews it.
    pub expires_at: DateTime<Utc>,
}

/// A lease just taken, and whose it was before.
#[derive(Debug)]
pub(crate) struct Acquired {
    /// The lease.
    pub(crate) lease: Lease,
    /// Who held it before (its lease lapsed, or it gave it up), if anyone.
    pub(crate) previous_owner: Option<String>,
}

/// A lease held by a runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The fencing token of this holding.
    pub(crate) token: i64,
    /// When to renew it, by this process's monotonic clock: half its
    /// duration after the database granted it. Never the wall clock
    /// against the database's expiry: a host whose clock is behind would
    /// let the lease lapse, one ahead would renew at every batch.
    pub(crate) renew_after: std::time::Instant,
}

/// The lease a row granted for `duration`, asked for at `asked`.
fn lease(
    row: &sqlx::postgres::PgRow,
    asked: std::time::Instant,
    duration: Duration,
) -> Result<Lease, sqlx::Error> {
    Ok(Lease {
        token: row.try_get("fencing_token")?,
        renew_after: asked + duration / 2,
    })
}
