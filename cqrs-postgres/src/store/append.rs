//! Appends through the store's own sessions: one statement per attempt,
//! the retries of `Any` appends that lost a race, and the resends of an
//! append whose answer was lost.

use super::batch::Batch;
use super::group_commit::Grouped;
use super::resolve::*;
use super::*;

/// How often an append is sent again after its answer was lost, the pause
/// before the first resend (each later one is four times longer: 0.1 s,
/// 0.4 s, 1.6 s), and how long one resend may take.
pub(super) const LOST_ANSWER_RESENDS: u32 = 3;
pub(super) const LOST_ANSWER_FIRST_PAUSE: std::time::Duration =
    std::time::Duration::from_millis(100);
pub(super) const LOST_ANSWER_RESEND_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(2);

/// The store's appends: a view of what writing needs (its database,
/// statements, notifier and group writer), made on the spot by
/// [`PostgresEventStore::appender`].
#[derive(Clone, Copy)]
pub(crate) struct Appender<'a> {
    pub(super) db: &'a Database,
    pub(super) sql: &'a std::sync::Arc<Statements>,
    pub(super) notifier: &'a std::sync::Arc<Notifier>,
    pub(super) grouping: Option<&'a Grouping>,
}

impl Appender<'_> {
    /// Wakes log readers for an append found already stored: the attempt
    /// that stored it may have lost its answer before it could.
    pub(super) fn announce_resolved(&self, result: &AppendResult) {
        if result.already_stored && !result.events.is_empty() {
            self.notifier.appended();
        }
    }

    /// Appends a batch right after `version`, which the writer saw as the
    /// stream's last (see `Statements::append_at`).
    pub(super) async fn append_at(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        version: u64,
        batch: &Batch,
    ) -> Result<Attempt, sqlx::Error> {
        let after = i64::try_from(version).unwrap_or(i64::MAX);
        let sql = match batch.snapshot {
            Some(_) => &self.sql.append_at_with_snapshot,
            None => &self.sql.append_at,
        };
        let query = self
            .db
            .query(sql)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .bind(after);
        let rows = batch
            .bind_snapshot(batch.bind(query))
            .fetch_all(&mut *connection)
            .await?;
        if rows.is_empty() {
            // Version `version` is not stored: the stream is behind it.
            return Ok(Attempt::Refused {
                actual: self.read_version(connection, stream).await?,
            });
        }
        let mut events: Vec<Option<Committed>> = vec![None; batch.ids.len()];
        for row in &rows {
            let stored: i64 = row.try_get(0)?;
            let position: i64 = row.try_get(1)?;
            let transaction: i64 = row.try_get(2)?;
            let index = stored
                .unsigned_abs()
                .checked_sub(version + 1)
                .and_then(|index| usize::try_from(index).ok())
                .filter(|&index| index < events.len())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "append after version {version} returned version {stored}"
                    ))
                })?;
            events[index] = Some(Committed {
                event_id: batch.ids[index],
                version: stored.unsigned_abs(),
                position: Position::new(transaction.unsigned_abs(), position.unsigned_abs()),
                recorded_at: row.try_get(3)?,
            });
        }
        let events = events
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "append after version {version} returned {} rows for {} events",
                    rows.len(),
                    batch.ids.len()
                ))
            })?;
        Ok(Attempt::Done(AppendResult {
            stream_version: version + events.len() as u64,
            events,
            already_stored: false,
        }))
    }

    pub(super) async fn append_once(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Attempt, sqlx::Error> {
        let (low, high) = version_bounds(expected);
        let query = self
            .db
            .query(&self.sql.append)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .bind(low)
            .bind(high);
        let rows = batch.bind(query).fetch_all(&mut *connection).await?;
        let Some(first) = rows.first() else {
            return Err(sqlx::Error::RowNotFound);
        };
        let current: i64 = first.try_get("current_version")?;
        let current = current.max(0).unsigned_abs();
        if batch.ids.is_empty() || first.try_get::<Option<Uuid>, _>("event_id")?.is_none() {
            return if expected.accepts(current) {
                Ok(Attempt::Done(AppendResult {
                    stream_version: current,
                    events: Vec::new(),
                    already_stored: false,
                }))
            } else {
                Ok(Attempt::Refused { actual: current })
            };
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row.try_get("version")?;
            let position: i64 = row.try_get("position")?;
            let transaction: i64 = row.try_get("transaction")?;
            events.push(Committed {
                event_id: row.try_get("event_id")?,
                version: version.unsigned_abs(),
                position: Position::new(transaction.unsigned_abs(), position.unsigned_abs()),
                recorded_at: row.try_get("recorded_at")?,
            });
        }
        Ok(Attempt::Done(AppendResult {
            stream_version: current + events.len() as u64,
            events,
            already_stored: false,
        }))
    }

    /// Hands the append to the store's group writer, when it has one and
    /// the append can be grouped (see
    /// [`StoreOptions::group_commit`](super::StoreOptions::group_commit)).
    async fn grouped(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &std::sync::Arc<Batch>,
    ) -> Option<Grouped> {
        let grouping = self.grouping?;
        let after = known_version(expected)?;
        if batch.ids.is_empty() || batch.snapshot.is_some() {
            return None;
        }
        Some(grouping.append(self, stream, after, batch.clone()).await)
    }

    /// One append, with the retries of `Any` appends that lost a race.
    pub(super) async fn try_append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        batch: &Batch,
    ) -> Result<AppendResult, StoreError> {
        let mut lost_races: u32 = 0;
        loop {
            let mut connection = self.db.session().await.map_err(store_error)?;
            let attempt = match known_version(expected) {
                Some(version) if !batch.ids.is_empty() => {
                    self.append_at(&mut connection, stream, version, batch)
                        .await
                }
                _ => {
                    self.append_once(&mut connection, stream, expected, batch)
                        .await
                }
            };
            let error = match attempt {
                Ok(Attempt::Done(result)) => {
                    // Behind a pooler this is the COMMIT: its answer lost,
                    // the outcome is unknown.
                    connection.finish().await.map_err(sent_write_error)?;
                    if !result.events.is_empty() {
                        self.notifier.appended();
                    }
                    if known_version(expected).is_none() {
                        // Only `append_at` saves the snapshot in its statement.
                        self.save_snapshot_after(batch, &result).await;
                    }
                    return Ok(result);
                }
                Ok(Attempt::Refused { actual }) => {
                    // Only read since: the session ends without a commit,
                    // so no failure to end it can hide the answer.
                    let refused = self
                        .refused(&mut connection, stream, expected, actual, events)
                        .await;
                    drop(connection);
                    return refused.inspect(|result| self.announce_resolved(result));
                }
                Err(error) => error,
            };
            let Some(ids_taken) = key_violation(&error) else {
                return Err(sent_write_error(error));
            };
            // Resolved on a fresh session: behind a pooler, the failed one's
            // transaction is aborted.
            drop(connection);
            let mut connection = self.db.session().await.map_err(store_error)?;
            let resolved = self
                .after_key_violation(&mut connection, stream, expected, events, ids_taken)
                .await?;
            drop(connection);
            match resolved {
                Resolved::Stored(result) => {
                    self.announce_resolved(&result);
                    return Ok(result);
                }
                Resolved::Failed(error) => return Err(error),
                Resolved::LostRace => {
                    lost_races += 1;
                    pause_after_lost_race(lost_races).await;
                }
            }
        }
    }
}

/// What one run of an append statement did.
pub(super) enum Attempt {
    Done(AppendResult),
    /// The stream was not at the expected version.
    Refused {
        actual: u64,
    },
}

/// Refuses a batch that names one event id twice.
pub(super) fn check_batch(stream: &StreamId, events: &[NewEvent]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    match events.iter().find(|event| !seen.insert(event.event_id)) {
        Some(duplicate) => Err(StoreError::EventIdReused {
            event_id: duplicate.event_id,
            stream: stream.clone(),
        }),
        None => Ok(()),
    }
}

/// The stream versions an expectation accepts, as an inclusive range.
pub(super) fn version_bounds(expected: ExpectedVersion) -> (i64, i64) {
    match expected {
        ExpectedVersion::Any => (0, i64::MAX),
        ExpectedVersion::NoStream => (0, 0),
        ExpectedVersion::StreamExists => (1, i64::MAX),
        ExpectedVersion::Exact(version) => {
            let version = i64::try_from(version).unwrap_or(i64::MAX);
            (version, version)
        }
    }
}

/// The stream version an expectation names exactly, if it does.
pub(super) fn known_version(expected: ExpectedVersion) -> Option<u64> {
    match expected {
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => Some(version),
        ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
    }
}

impl Appender<'_> {
    /// [`EventStore::append`]: one append, sent again when its answer was lost.
    /// With `snapshot`, [`EventStore::append_with_snapshot`]: the snapshot
    /// is saved in the append's own statement.
    pub(super) async fn append_resending(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    ) -> Result<AppendResult, StoreError> {
        cqrskit_core::limits::check_append(stream, &events)?;
        check_batch(stream, &events)?;
        let mut batch = Batch::new(stream, &events)?;
        batch.snapshot = snapshot.filter(|snapshot| &snapshot.stream == stream);
        let batch = std::sync::Arc::new(batch);
        let mut result = match self.grouped(stream, expected, &batch).await {
            Some(Grouped::Stored(result)) => Ok(result),
            Some(Grouped::Failed(error)) => Err(error),
            Some(Grouped::Alone(_place)) => {
                self.try_append(stream, expected, &events, &batch).await
            }
            Some(Grouped::NotWritten) | None => {
                self.try_append(stream, expected, &events, &batch).await
            }
        };
        // A lost answer: the same events again tell whether the first attempt
        // was stored (the store recognises their ids) or write them now.
        let mut pause = LOST_ANSWER_FIRST_PAUSE;
        for resend in 1..=LOST_ANSWER_RESENDS {
            let Err(StoreError::OutcomeUnknown(error)) = &result else {
                break;
            };
            tracing::warn!(%stream, resend, %error, "the answer to an append was lost; sending it again");
            tokio::time::sleep(pause).await;
            // The connection was one the server had ended: others in the
            // pool may be too.
            if is_dead_connection(error.as_ref()) {
                self.db.sweep_dead().await;
            }
            pause *= 4;
            let again = self.try_append(stream, expected, &events, &batch);
            result = match tokio::time::timeout(LOST_ANSWER_RESEND_TIMEOUT, again).await {
                // Answers that settle it: the events are stored (now or
                // before), or they never will be.
                Ok(
                    outcome @ (Ok(_)
                    | Err(
                        StoreError::Conflict(_)
                        | StoreError::EventIdReused { .. }
                        | StoreError::InvalidEvent { .. },
                    )),
                ) => outcome,
                // Anything else (not sent, timed out behind the first
                // attempt, still on its way) leaves the outcome unknown.
                Ok(Err(error)) => Err(StoreError::OutcomeUnknown(Box::new(error))),
                Err(elapsed) => Err(StoreError::OutcomeUnknown(Box::new(elapsed))),
            };
        }
        result
    }
}
