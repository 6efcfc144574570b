//! What a refused or failed append turns out to be: stored already (a
//! retry whose first answer was lost), a reuse of event ids, a conflict,
//! or a race lost to another writer.

use super::*;

/// How long an `ExpectedVersion::Any` append waits, at most, before trying
/// again after losing a race for a version: it expects nothing, so losing is
/// never a conflict for it, and it tries until it wins.
pub(super) const ANY_VERSION_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl Appender<'_> {
    /// After an insert failed on the stream's version key or the event id
    /// key: the batch was stored already (a retry whose first answer was
    /// lost, a double submit), or its ids are taken by other content, or
    /// another writer took the version, which is a lost race when
    /// `expected` accepts the stream's version now and a conflict otherwise.
    pub(super) async fn after_key_violation(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        ids_taken: bool,
    ) -> Result<Resolved, StoreError> {
        if let Some(earlier) = self.earlier_append(connection, stream, events).await? {
            return Ok(Resolved::Stored(earlier));
        }
        if ids_taken {
            return Ok(Resolved::Failed(StoreError::EventIdReused {
                event_id: events.first().map(|e| e.event_id).unwrap_or_default(),
                stream: stream.clone(),
            }));
        }
        let actual = self.version_of(connection, stream).await?;
        if expected.accepts(actual) {
            return Ok(Resolved::LostRace);
        }
        Ok(Resolved::Failed(
            Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }
            .into(),
        ))
    }

    /// An append the expectation refused: a conflict, unless its events are
    /// already stored (a retry of an append that succeeded, whose answer was
    /// lost), which is resolved as such.
    pub(super) async fn refused(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        actual: u64,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        match self.earlier_append(connection, stream, events).await? {
            Some(earlier) => Ok(earlier),
            None => Err(Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }
            .into()),
        }
    }

    /// Resolves an append some of whose event ids may be stored already:
    /// `None` when none is; a retry of an earlier append (success, with the
    /// original places) when all are, exactly as given; otherwise a reuse of
    /// ids for other content (refused).
    pub(super) async fn earlier_append(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let rows = self
            .db
            .query(&self.sql.events_by_id)
            .bind(&ids)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut stored: HashMap<Uuid, StoredEvent> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let event = row::event(row)?;
            stored.insert(event.event_id, event);
        }
        let mut committed = Vec::with_capacity(events.len());
        let mut previous: Option<u64> = None;
        for event in events {
            let matching = stored.get(&event.event_id).filter(|stored| {
                stored.stream == *stream
                    && event.same_as(stored)
                    && previous.is_none_or(|version| stored.version == version + 1)
            });
            let Some(original) = matching else {
                // Named: an id stored with other content, rather than
                // this event's, which may be one not stored at all.
                let reused = events
                    .iter()
                    .find(|event| {
                        stored.get(&event.event_id).is_some_and(|stored| {
                            stored.stream != *stream || !event.same_as(stored)
                        })
                    })
                    .unwrap_or(event);
                return Err(StoreError::EventIdReused {
                    event_id: reused.event_id,
                    stream: stream.clone(),
                });
            };
            previous = Some(original.version);
            committed.push(Committed {
                event_id: original.event_id,
                version: original.version,
                position: original.position,
                recorded_at: original.recorded_at,
            });
        }
        let stream_version = self.version_of(&mut *connection, stream).await?;
        Ok(Some(AppendResult {
            stream_version,
            events: committed,
            already_stored: true,
        }))
    }

    pub(super) async fn version_of(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
    ) -> Result<u64, StoreError> {
        self.read_version(connection, stream)
            .await
            .map_err(store_error)
    }

    /// The stream's last version, as the append attempts need it.
    pub(super) async fn read_version(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
    ) -> Result<u64, sqlx::Error> {
        let version: i64 = self
            .db
            .query_scalar(&self.sql.stream_version)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .fetch_one(&mut *connection)
            .await?;
        Ok(version.max(0).unsigned_abs())
    }
}

/// How an insert that failed on a key turned out.
pub(super) enum Resolved {
    /// The batch was stored already, exactly as given.
    Stored(AppendResult),
    /// The append is refused.
    Failed(StoreError),
    /// Another writer took the version; the expectation still holds.
    LostRace,
}

/// Whether `error` is a violation of the stream's version key (`false`) or
/// of the event id key (`true`); `None` for anything else.
pub(super) fn key_violation(error: &sqlx::Error) -> Option<bool> {
    match unique_violation(error)? {
        "events_stream_version_key" => Some(false),
        "events_event_id_key" => Some(true),
        _ => None,
    }
}

/// Spreads out writers that keep losing races for the same stream's next
/// version: the first retries go at once, later ones after a growing,
/// jittered pause.
pub(super) async fn pause_after_lost_race(lost_races: u32) {
    if lost_races < 3 {
        return;
    }
    let jitter = u64::from(Uuid::now_v7().as_u128() as u16) % 1000;
    let pause = std::time::Duration::from_micros(u64::from(lost_races.min(20)) * jitter);
    tokio::time::sleep(pause.min(ANY_VERSION_MAX_PAUSE)).await;
}
