//! Appends inside a transaction the caller controls.

use super::append::*;
use super::batch::Batch;
use super::resolve::*;
use super::*;

/// Opens `append_in`'s savepoint and asks whether the transaction already
/// has an id (see [`horizon::HAS_TRANSACTION_ID`]).
// language=SQL
const SAVEPOINT_AND_PROBE: &str =
    "SAVEPOINT cqrs_append; SELECT pg_current_xact_id_if_assigned() IS NOT NULL";

impl Appender<'_> {
    /// [`PostgresEventStore::append_in`].
    pub(crate) async fn append_in(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        cqrskit_core::limits::check_append(stream, &events)?;
        check_batch(stream, &events)?;
        let batch = Batch::new(stream, &events)?;
        let mut lost_races: u32 = 0;
        loop {
            let Guard {
                savepoint: savepoints,
                retag,
            } = self.guard_append(connection).await?;
            let error = match self
                .append_once(&mut *connection, stream, expected, &batch)
                .await
            {
                Ok(attempt) => {
                    let attempt = match attempt {
                        Attempt::Done(result) if retag && !result.events.is_empty() => {
                            Attempt::Done(self.retag(connection, result).await?)
                        }
                        other => other,
                    };
                    if savepoints {
                        self.savepoint(connection, "RELEASE SAVEPOINT cqrs_append")
                            .await?;
                    }
                    return match attempt {
                        Attempt::Done(result) => Ok(result),
                        Attempt::Refused { actual } => {
                            self.refused(&mut *connection, stream, expected, actual, &events)
                                .await
                        }
                    };
                }
                Err(error) => error,
            };
            let Some(ids_taken) = key_violation(&error) else {
                // Nothing commits before the caller does.
                return Err(store_error(error));
            };
            let resolved = if savepoints {
                self.savepoint(connection, "ROLLBACK TO SAVEPOINT cqrs_append")
                    .await?;
                self.after_key_violation(connection, stream, expected, &events, ids_taken)
                    .await?
            } else {
                // Not in a transaction sqlx knows of: resolved on a fresh
                // session.
                let mut fresh = self.db.session().await.map_err(store_error)?;
                self.after_key_violation(&mut fresh, stream, expected, &events, ids_taken)
                    .await?
            };
            match resolved {
                Resolved::Stored(result) => return Ok(result),
                Resolved::Failed(error) => return Err(error),
                Resolved::LostRace => {
                    lost_races += 1;
                    pause_after_lost_race(lost_races).await;
                }
            }
        }
    }

    /// Prepares one attempt of [`append_in`](Self::append_in). A savepoint
    /// keeps the caller's transaction usable when the insert fails on a key
    /// (the outcome is then resolved on the same connection, with no second
    /// one from the pool). A transaction that has an id already (it wrote
    /// before appending) must tag its events with a fresh one, which only a
    /// savepoint can give: see [`horizon`](crate::horizon).
    pub(super) async fn guard_append(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Guard, StoreError> {
        if connection.is_in_transaction() {
            // One round trip for both.
            // A query without arguments goes out as a simple query, which may
            // hold two statements.
            let row = sqlx::Executor::fetch_one(&mut *connection, SAVEPOINT_AND_PROBE)
                .await
                .map_err(store_error)?;
            let retag: bool = row.try_get(0).map_err(store_error)?;
            return Ok(Guard {
                savepoint: true,
                retag,
            });
        }
        // Outside a transaction sqlx began: autocommit, where the append gets
        // a fresh id by itself, or a transaction begun with a plain `BEGIN`.
        let retag: bool = self
            .db
            .query_scalar(horizon::HAS_TRANSACTION_ID)
            .fetch_one(&mut *connection)
            .await
            .map_err(store_error)?;
        if retag {
            self.savepoint(connection, "SAVEPOINT cqrs_append").await?;
        }
        Ok(Guard {
            savepoint: retag,
            retag,
        })
    }

    /// Tags the events `result` just inserted with the id of the savepoint
    /// that inserted them, and returns their new positions.
    pub(super) async fn retag(
        &self,
        connection: &mut PgConnection,
        mut result: AppendResult,
    ) -> Result<AppendResult, StoreError> {
        let ids: Vec<Uuid> = result.events.iter().map(|event| event.event_id).collect();
        let rows = self
            .db
            .query(&self.sql.retag)
            .bind(&ids)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        for row in rows {
            let event_id: Uuid = row.try_get("event_id").map_err(store_error)?;
            let position: i64 = row.try_get("position").map_err(store_error)?;
            let transaction: i64 = row.try_get("transaction").map_err(store_error)?;
            if let Some(event) = result
                .events
                .iter_mut()
                .find(|event| event.event_id == event_id)
            {
                event.position = Position::new(transaction.unsigned_abs(), position.unsigned_abs());
            }
        }
        Ok(result)
    }

    pub(super) async fn savepoint(
        &self,
        connection: &mut PgConnection,
        sql: &str,
    ) -> Result<(), StoreError> {
        self.db
            .query(sql)
            .execute(connection)
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

/// How one attempt of `append_in` runs.
pub(super) struct Guard {
    /// Under the savepoint `cqrs_append`.
    savepoint: bool,
    /// Its events must be tagged with the savepoint's id.
    retag: bool,
}
