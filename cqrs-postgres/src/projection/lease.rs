//! The lease: one active runner per projection across processes.
//!
//! A row in the projections table records the owner, when its lease expires
//! (by the database's clock, so application clocks may disagree) and a
//! fencing token that every takeover increments. A runner checks owner and
//! token under a row lock in the same transaction that moves the checkpoint,
//! so a runner that lost its lease cannot apply a batch, however late it
//! notices.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::database::Database;

/// Who holds a projection's lease, and until when (by the database's
/// clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's owner name ([`ProjectionRunner::with_owner`](crate::projection::ProjectionRunner::with_owner)).
    pub owner: String,
    /// When the lease lapses unless its holder renews it.
    pub expires_at: DateTime<Utc>,
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

/// A projection's row in the projections table, seen for its lease.
#[derive(Clone, Copy)]
pub(crate) struct LeaseRow<'a> {
    pub(crate) db: &'a Database,
    pub(crate) table: &'a str,
    pub(crate) name: &'a str,
}

impl LeaseRow<'_> {
    /// Takes the lease of `name` for `owner`, if it is free, expired, or already
    /// `owner`'s. Creates the projection's row on first use. Never waits: while
    /// another runner's transaction holds the row (it is applying a batch, or it
    /// froze in one and the server has not ended its session yet), the lease is
    /// not taken this time.
    pub(crate) async fn acquire(
        &self,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let (db, table, name) = (self.db, self.table, self.name);
        // Before the statements: the database's expiry counts from a moment
        // no earlier than this.
        let asked = std::time::Instant::now();
        let mut session = db.session().await?;
        super::checkpoint::CheckpointRow { db, table, name }
            .ensure(&mut session)
            .await?;
        // language=SQL
        let row = db
            .query(&format!(
                "UPDATE {table}
             SET owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                 fencing_token = fencing_token + 1, updated_at = now()
             WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_expires_at < now())
               AND name IN (SELECT name FROM {table} WHERE name = $1 FOR UPDATE SKIP LOCKED)
             RETURNING fencing_token"
            ))
            .bind(name)
            .bind(owner)
            .bind(duration.as_secs_f64())
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        row.map(|row| lease(&row, asked, duration)).transpose()
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
}
