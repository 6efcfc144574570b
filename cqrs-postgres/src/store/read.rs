//! Reads: streams, the global log, single events, and replays, by a view
//! of the store that holds only what reading needs.

use super::*;

/// The store's reads: a view of its database, statements and log floor,
/// made on the spot by [`PostgresEventStore::reader`].
#[derive(Clone, Copy)]
pub(crate) struct LogReader<'a> {
    pub(super) db: &'a Database,
    pub(super) sql: &'a Statements,
    pub(super) floor: &'a horizon::Floor,
}

/// What a read of the global log by a runner asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogRead<'a> {
    /// The event and aggregate types wanted.
    pub(crate) filter: &'a LogFilter,
    /// Only streams in these slices (a partition's), when given.
    pub(crate) slices: Option<&'a std::ops::RangeInclusive<u16>>,
    /// At most this many events.
    pub(crate) limit: usize,
    /// No more events once their payloads reach this many bytes (the first
    /// is always read).
    pub(crate) max_bytes: usize,
    /// Whether to read the metadata (empty otherwise).
    pub(crate) with_metadata: bool,
}

impl LogReader<'_> {
    /// Runs `query` on a session of its own and reads its rows as events.
    pub(super) async fn fetch_events(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut session = self.db.session().await.map_err(store_error)?;
        let rows = query.fetch_all(&mut *session).await.map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        rows.iter().map(row::event).collect()
    }

    /// [`EventStore::read_log`] on a given connection (a projection's
    /// transaction), so the read and the writes it leads to share one
    /// session; only streams in `slices` when given (a partition's); cut
    /// after `max_bytes` of payload, and with rows that cannot be read kept
    /// in their place rather than failing the whole read.
    pub(crate) async fn read_log_rows_on(
        &self,
        connection: &mut PgConnection,
        after: Position,
        read: LogRead<'_>,
    ) -> Result<Vec<LogRow>, StoreError> {
        let LogRead {
            filter,
            slices,
            limit: limit_to,
            max_bytes,
            with_metadata,
        } = read;
        let sql = match (filter.event_types.is_empty(), with_metadata) {
            (true, true) => &self.sql.read_log,
            (false, true) => &self.sql.read_log_filtered,
            (true, false) => &self.sql.read_log_lean,
            (false, false) => &self.sql.read_log_filtered_lean,
        };
        let rows = self
            .db
            .query(sql)
            .bind(to_i64(after.transaction, "transaction id")?)
            .bind(to_i64(after.sequence, "position")?)
            .bind(&filter.event_types)
            .bind(none_if_empty(&filter.aggregate_types))
            .bind(limit(limit_to))
            .bind(limit(max_bytes))
            .bind(self.floor.get())
            .bind(slices.map(|slices| slice(*slices.start())))
            .bind(slices.map(|slices| slice(*slices.end())))
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        let rows: Vec<LogRow> = rows.iter().map(row::log_row).collect::<Result<_, _>>()?;
        if let Some(last) = rows.last() {
            self.floor.passed(last.event().position.transaction);
        }
        Ok(rows)
    }

    /// [`EventStore::event_by_id`] on a given connection (a runner's
    /// transaction).
    pub(crate) async fn event_by_id_on(
        &self,
        connection: &mut PgConnection,
        event_id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let row = self
            .db
            .query(&self.sql.events_by_id)
            .bind(vec![event_id])
            .fetch_optional(connection)
            .await
            .map_err(store_error)?;
        row.as_ref().map(row::event).transpose()
    }

    /// [`EventStore::read_stream`].
    pub(super) async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.fetch_events(
            self.db
                .query(&self.sql.read_stream)
                .bind(&stream.aggregate_type)
                .bind(&stream.aggregate_id)
                .bind(to_i64(from, "version")?)
                .bind(limit(limit_to)),
        )
        .await
    }

    /// [`EventStore::read_log`], on a session of its own.
    pub(super) async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.db.session().await.map_err(store_error)?;
        let read = LogRead {
            filter,
            slices: None,
            limit: limit_to,
            max_bytes: usize::MAX,
            with_metadata: true,
        };
        let rows = self.read_log_rows_on(&mut connection, after, read).await?;
        connection.finish().await.map_err(store_error)?;
        rows.into_iter().map(LogRow::into_event).collect()
    }

    /// [`EventStore::event_by_id`].
    pub(super) async fn event_by_id(
        &self,
        event_id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let query = self.db.query(&self.sql.events_by_id).bind(vec![event_id]);
        Ok(self.fetch_events(query).await?.pop())
    }

    /// [`EventQueries::events_by_correlation`].
    pub(super) async fn events_by_correlation(
        &self,
        correlation_id: Uuid,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.fetch_events(
            self.db
                .query(&self.sql.events_by_correlation)
                .bind(correlation_id)
                .bind(limit(limit_to)),
        )
        .await
    }

    /// [`EventQueries::events_in_time_range`].
    pub(super) async fn events_in_time_range(
        &self,
        filter: &LogFilter,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let query = if filter.event_types.is_empty() {
            self.db.query(&self.sql.events_in_time_range_all_types)
        } else {
            self.db
                .query(&self.sql.events_in_time_range)
                .bind(&filter.event_types)
        };
        self.fetch_events(
            query
                .bind(from)
                .bind(until)
                .bind(none_if_empty(&filter.aggregate_types))
                .bind(limit(limit_to)),
        )
        .await
    }

    /// [`EventStore::replay`]: from the snapshot when it proves usable, from
    /// the stream's start otherwise.
    pub(super) async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        match self.replay_once(request, sink).await? {
            Replayed::All => Ok(()),
            Replayed::SnapshotRefused => {
                let without = ReplayRequest {
                    snapshot_schema: None,
                    ..request
                };
                self.replay_once(without, sink).await.map(|_| ())
            }
        }
    }

    /// One replay statement, its rows handed to `sink` as they arrive.
    async fn replay_once(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<Replayed, StoreError> {
        let mut delivered = false;
        match self.replay_attempt(request, sink, &mut delivered).await {
            // The pool hands out connections without a ping first (a round
            // trip per command saved), so one may turn out dead on first use
            // (the server restarted, an idle connection was cut). Nothing
            // reached the sink yet: reading again is safe.
            Err(StoreError::Unavailable(source))
                if !delivered && is_dead_connection(source.as_ref()) =>
            {
                let error = StoreError::Unavailable(source);
                tracing::debug!(stream = %request.stream, %error, "a pooled connection was dead; reading again");
                self.db.sweep_dead().await;
                self.replay_attempt(request, sink, &mut delivered).await
            }
            other => other,
        }
    }

    async fn replay_attempt(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
        delivered: &mut bool,
    ) -> Result<Replayed, StoreError> {
        let stream = request.stream;
        let upto = request
            .upto
            .map_or(Ok(i64::MAX), |upto| to_i64(upto, "version"))?;
        // A schema version beyond the column's range matches no snapshot.
        let schema = request
            .snapshot_schema
            .and_then(|schema| i32::try_from(schema).ok());
        let mut session = self.db.session().await.map_err(store_error)?;
        let mut rows = self
            .db
            .query(&self.sql.replay)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .bind(schema)
            .bind(upto)
            .fetch(&mut *session);
        // The snapshot is held back until the event at its version arrives:
        // that proves the stream has the version the snapshot claims. One
        // ahead of its stream would make every command conflict.
        let mut pending: Option<Snapshot> = None;
        let mut first = true;
        while let Some(row) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            let row = row.map_err(store_error)?;
            match row::replay_row(&row, stream)? {
                row::ReplayRow::Snapshot(snapshot) if first => pending = Some(snapshot),
                row::ReplayRow::Snapshot(snapshot) => {
                    return Err(StoreError::Corrupted {
                        location: format!("stream {stream}"),
                        reason: format!(
                            "the replay read the snapshot at version {} after events",
                            snapshot.version
                        ),
                    });
                }
                row::ReplayRow::Event(event) => match pending.take() {
                    Some(snapshot) if snapshot.version == event.version => {
                        *delivered = true;
                        if !sink.snapshot(&snapshot) {
                            return Ok(Replayed::SnapshotRefused);
                        }
                    }
                    Some(_) => return Ok(Replayed::SnapshotRefused),
                    None => {
                        *delivered = true;
                        sink.event(event)?;
                    }
                },
            }
            first = false;
        }
        if pending.is_some() {
            return Ok(Replayed::SnapshotRefused);
        }
        drop(rows);
        session.finish().await.map_err(store_error)?;
        Ok(Replayed::All)
    }
}

/// How one replay statement ended.
enum Replayed {
    /// Every row was handed over.
    All,
    /// The snapshot was refused (by the sink, or because the stream does
    /// not have its version); the events after it were not all read.
    SnapshotRefused,
}

fn none_if_empty(values: &[String]) -> Option<&[String]> {
    (!values.is_empty()).then_some(values)
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A slice as the column's type (slices are below 1024).
fn slice(slice: u16) -> i16 {
    i16::try_from(slice).unwrap_or(i16::MAX)
}
