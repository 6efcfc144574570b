//! The oldest append still in flight: the session that holds back every
//! reader of the global log until it ends.

use chrono::{DateTime, Utc};
use cqrskit_core::StoreError;
use sqlx::Row;

use super::PostgresEventStore;
use crate::error::store_error;
use crate::row::to_u64;

/// The session holding back readers of the global log: the oldest append
/// still in flight (see [`PostgresEventStore::oldest_open_append`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldestAppend {
    /// Its server process id (`pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its transaction id.
    pub transaction_id: u64,
    /// When its transaction started.
    pub started_at: Option<DateTime<Utc>>,
    /// `active`, `idle in transaction`, ...
    pub state: Option<String>,
    /// The client's `application_name`.
    pub application_name: String,
    /// The start of its current or last query.
    pub query: String,
}

impl PostgresEventStore {
    /// The session whose open append holds back readers of the global log,
    /// if any. Readers never read past an append still in flight (its events
    /// could still commit), so a transaction that appended and was then left
    /// open (an idle session in a transaction, a slow inline projection)
    /// delays every projection of this schema until it ends. Transactions
    /// that append nothing hold back nobody.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn oldest_open_append(&self) -> Result<Option<OldestAppend>, StoreError> {
        let mut session = self.db.session().await.map_err(store_error)?;
        let row = self
            .db
            .query(&self.sql.oldest_append)
            .fetch_optional(&mut *session)
            .await
            .map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let xid: i64 = row.try_get("xid").map_err(store_error)?;
        Ok(Some(OldestAppend {
            pid: row.try_get("pid").map_err(store_error)?,
            transaction_id: to_u64(xid, "transaction id").map_err(|reason| {
                StoreError::Corrupted {
                    location: "pg_stat_activity".into(),
                    reason,
                }
            })?,
            started_at: row.try_get("xact_start").map_err(store_error)?,
            state: row.try_get("state").map_err(store_error)?,
            application_name: row.try_get("application_name").map_err(store_error)?,
            query: row.try_get("query").map_err(store_error)?,
        }))
    }
}
