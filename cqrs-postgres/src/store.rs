//! The PostgreSQL event store.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrskit_core::{
    AppendResult, Committed, Conflict, EventStore, ExpectedVersion, LogFilter, NewEvent, Position,
    ReplayRequest, ReplaySink, Snapshot, StoreError, StoredEvent, StreamId,
};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::database::Database;
use crate::error::{Result, is_dead_connection, sent_write_error, store_error, unique_violation};
use crate::horizon;
use crate::migrate;
use crate::notify::{Notifier, channel};
use crate::row::{self, LogRow, to_i64, to_u64};
use crate::schema::{SchemaName, Statements};

/// See [`PostgresEventStore::with_notify_interval`].
const DEFAULT_NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// How often an append is sent again after its answer was lost, the pause
/// before the first resend (each later one is four times longer: 0.1 s,
/// 0.4 s, 1.6 s), and how long one resend may take.
const LOST_ANSWER_RESENDS: u32 = 3;
/// Opens `append_in`'s savepoint and asks whether the transaction already
/// has an id (see [`horizon::HAS_TRANSACTION_ID`]).
// language=SQL
const SAVEPOINT_AND_PROBE: &str =
    "SAVEPOINT cqrs_append; SELECT pg_current_xact_id_if_assigned() IS NOT NULL";
const LOST_ANSWER_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const LOST_ANSWER_RESEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an `ExpectedVersion::Any` append waits, at most, before trying
/// again after losing a race for a version: it expects nothing, so losing is
/// never a conflict for it, and it tries until it wins.
const ANY_VERSION_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// An [`EventStore`] on PostgreSQL.
///
/// - appends are one statement: the stream's version is checked and the batch
///   inserted together, and the primary key on (stream, version) makes the
///   database reject the second of two racing writers, reported as
///   [`StoreError::Conflict`];
/// - the global log is gap-safe: see [`read_log`](EventStore::read_log) and
///   the crate docs;
/// - everything lives in one schema (default `public`), chosen with
///   [`with_schema`](Self::with_schema).
#[derive(Clone, Debug)]
pub struct PostgresEventStore {
    db: Database,
    schema: SchemaName,
    sql: std::sync::Arc<Statements>,
    notifier: std::sync::Arc<Notifier>,
    floor: std::sync::Arc<horizon::Floor>,
}

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
    /// A store over an existing pool, in schema `public`.
    pub fn from_pool(pool: PgPool) -> Self {
        let schema = SchemaName::default();
        let sql = std::sync::Arc::new(Statements::new(&schema));
        let db = Database::new(pool);
        let notifier = Notifier::new(db.clone(), channel(&schema), DEFAULT_NOTIFY_INTERVAL);
        Self {
            db,
            schema,
            sql,
            notifier,
            floor: std::sync::Arc::default(),
        }
    }

    /// The same store, told that its pool goes through a connection pooler
    /// in transaction mode (PgBouncer with `pool_mode = transaction`, the
    /// pooled URL of a managed PostgreSQL), optionally with a pool that
    /// reaches PostgreSQL directly.
    ///
    /// Every statement is then sent unnamed, and one that would run on its
    /// own runs in a transaction of its own: the only way statements survive
    /// such a pooler (see `docs/postgres.md`). It costs two more round trips
    /// per statement. What needs a session of its own goes through `direct`:
    /// [`migrate`](Self::migrate) (refused without it) and the projection
    /// runner's `LISTEN` (without it, runners poll, and say so).
    pub fn through_transaction_pooler(mut self, direct: Option<PgPool>) -> Self {
        self.db = self.db.through_pooler(direct);
        self.notifier = Notifier::new(
            self.db.clone(),
            channel(&self.schema),
            self.notifier.interval(),
        );
        self
    }

    /// Connects a pool to `url`: sqlx's defaults (10 connections), except
    /// that a connection is not pinged before each use (see
    /// [`connect_with`](Self::connect_with)).
    ///
    /// # Errors
    ///
    /// When the URL is malformed or the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?).await
    }

    /// [`connect`](Self::connect) with connection options built in code.
    ///
    /// The pool does not ping a connection before each use: that is a round
    /// trip per acquire, a third of a command on a cached aggregate. A
    /// connection found dead on first use (the server restarted, an idle
    /// connection was cut) costs a load a second read and an append its
    /// resend, after which the store closes the pool's other dead
    /// connections; the caller sees none of it. For sqlx's ping, build the
    /// pool yourself and pass it to [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Connects to PostgreSQL through a connection pooler in transaction
    /// mode at `pooled_url`, and directly at `direct_url` for what needs a
    /// session of its own: the usual pair a managed PostgreSQL gives (see
    /// [`through_transaction_pooler`](Self::through_transaction_pooler)).
    ///
    /// # Errors
    ///
    /// When a URL is malformed or the pooler cannot be reached (the direct
    /// pool connects when first used).
    pub async fn connect_through_pooler(
        pooled_url: &str,
        direct_url: Option<&str>,
    ) -> Result<Self> {
        let pooled: PgConnectOptions = pooled_url.parse()?;
        let direct = match direct_url {
            Some(url) => {
                let options: PgConnectOptions = url.parse()?;
                Some(
                    PgPoolOptions::new()
                        .max_connections(4)
                        .connect_lazy_with(options),
                )
            }
            None => None,
        };
        let pool = PgPoolOptions::new().connect_with(pooled).await?;
        Ok(Self::from_pool(pool).through_transaction_pooler(direct))
    }

    /// The same store in another schema (its tables are `<schema>.events` and
    /// `<schema>.snapshots`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`](crate::Error::InvalidSchemaName) unless the
    /// name is a plain lower-case identifier.
    pub fn with_schema(mut self, schema: &str) -> Result<Self> {
        self.schema = SchemaName::new(schema)?;
        self.sql = std::sync::Arc::new(Statements::new(&self.schema));
        self.floor = std::sync::Arc::default();
        self.notifier = Notifier::new(
            self.db.clone(),
            channel(&self.schema),
            self.notifier.interval(),
        );
        Ok(self)
    }

    /// How often, at most, the store wakes log readers while appends keep
    /// coming (default 5 ms). The first append after a quiet spell wakes them
    /// at once; later ones within the interval share one notification, so
    /// a projection sees a busy stream at most this much later than it could.
    /// Zero notifies after every append, at the cost of one more statement
    /// per burst of commits.
    pub fn with_notify_interval(mut self, interval: std::time::Duration) -> Self {
        self.notifier = Notifier::new(self.db.clone(), channel(&self.schema), interval);
        self
    }

    /// The pool, for read models and projections in the same database.
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// How the store reaches the database (for the runner).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The schema the store's tables live in.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Creates the schema and applies the embedded migrations not applied yet.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached or a migration fails;
    /// [`Error::SessionRequired`](crate::Error::SessionRequired) behind a
    /// transaction pooler without a direct pool.
    pub async fn migrate(&self) -> Result<()> {
        let pool = self
            .db
            .session_pool()
            .ok_or(crate::Error::SessionRequired("migrate"))?;
        migrate::run(pool, &self.schema).await
    }

    /// Appends inside a transaction the caller controls: the events commit or
    /// roll back with the caller's other writes (an outbox row, an inline read
    /// model). Same semantics as [`EventStore::append`]; a refused append
    /// (a conflict, reused ids) leaves the caller's transaction usable, as
    /// the insert runs under a savepoint when the connection is in a
    /// transaction begun through sqlx.
    ///
    /// # Errors
    ///
    /// As [`EventStore::append`].
    pub async fn append_in(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        cqrskit_core::limits::check_append(stream, &events)?;
        check_batch(stream, &events)?;
        let batch = Batch::new(&events)?;
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

    /// Wakes log readers for an append found already stored: the attempt
    /// that stored it may have lost its answer before it could.
    fn announce_resolved(&self, result: &AppendResult) {
        if result.already_stored && !result.events.is_empty() {
            self.notifier.appended();
        }
    }

    /// Prepares one attempt of [`append_in`](Self::append_in). A savepoint
    /// keeps the caller's transaction usable when the insert fails on a key
    /// (the outcome is then resolved on the same connection, with no second
    /// one from the pool). A transaction that has an id already (it wrote
    /// before appending) must tag its events with a fresh one, which only a
    /// savepoint can give: see [`horizon`](crate::horizon).
    async fn guard_append(&self, connection: &mut PgConnection) -> Result<Guard, StoreError> {
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
    async fn retag(
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

    async fn savepoint(&self, connection: &mut PgConnection, sql: &str) -> Result<(), StoreError> {
        self.db
            .query(sql)
            .execute(connection)
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// After an insert failed on the stream's version key or the event id
    /// key: the batch was stored already (a retry whose first answer was
    /// lost, a double submit), or its ids are taken by other content, or
    /// another writer took the version, which is a lost race when
    /// `expected` accepts the stream's version now and a conflict otherwise.
    async fn after_key_violation(
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

    /// Appends a batch right after `version`, which the writer saw as the
    /// stream's last (see `Statements::append_at`).
    async fn append_at(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
        version: u64,
        batch: &Batch,
    ) -> Result<Attempt, sqlx::Error> {
        let after = i64::try_from(version).unwrap_or(i64::MAX);
        let query = self
            .db
            .query(&self.sql.append_at)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .bind(after);
        let rows = batch.bind(query).fetch_all(&mut *connection).await?;
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

    async fn append_once(
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

    /// An append the expectation refused: a conflict, unless its events are
    /// already stored (a retry of an append that succeeded, whose answer was
    /// lost), which is resolved as such.
    async fn refused(
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
    async fn earlier_append(
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
                return Err(StoreError::EventIdReused {
                    event_id: event.event_id,
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

    async fn version_of(
        &self,
        connection: &mut PgConnection,
        stream: &StreamId,
    ) -> Result<u64, StoreError> {
        self.read_version(connection, stream)
            .await
            .map_err(store_error)
    }

    /// The stream's last version, as the append attempts need it.
    async fn read_version(
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

    async fn fetch_events(
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
    /// session; cut after `max_bytes` of payload, and with rows that cannot
    /// be read kept in their place rather than failing the whole read.
    pub(crate) async fn read_log_rows_on(
        &self,
        connection: &mut PgConnection,
        after: Position,
        filter: &LogFilter,
        limit_to: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRow>, StoreError> {
        let sql = if filter.event_types.is_empty() {
            &self.sql.read_log
        } else {
            &self.sql.read_log_filtered
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

    /// The channel on which appends to this store notify, once per appending
    /// statement, at commit.
    pub fn notification_channel(&self) -> String {
        channel(&self.schema)
    }

    /// Wakes the log readers listening on this store's channel. Appends
    /// through the store do this by themselves once they commit; call it after
    /// committing a transaction in which you used
    /// [`append_in`](Self::append_in) (readers otherwise find the events at
    /// their next poll).
    pub fn notify_appended(&self) {
        self.notifier.appended();
    }

    /// The schema-qualified name of one of the store's tables.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.schema.quoted())
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

/// How an insert that failed on a key turned out.
enum Resolved {
    /// The batch was stored already, exactly as given.
    Stored(AppendResult),
    /// The append is refused.
    Failed(StoreError),
    /// Another writer took the version; the expectation still holds.
    LostRace,
}

/// Whether `error` is a violation of the stream's version key (`false`) or
/// of the event id key (`true`); `None` for anything else.
fn key_violation(error: &sqlx::Error) -> Option<bool> {
    match unique_violation(error)? {
        "events_stream_version_key" => Some(false),
        "events_event_id_key" => Some(true),
        _ => None,
    }
}

/// What one run of the append statement did.
/// How one attempt of `append_in` runs.
struct Guard {
    /// Under the savepoint `cqrs_append`.
    savepoint: bool,
    /// Its events must be tagged with the savepoint's id.
    retag: bool,
}

enum Attempt {
    Done(AppendResult),
    /// The stream was not at the expected version.
    Refused {
        actual: u64,
    },
}

/// The batch as the column arrays the append statement unnests.
struct Batch {
    ids: Vec<Uuid>,
    types: Vec<String>,
    versions: Vec<i32>,
    payloads: Vec<String>,
    metadata: Vec<String>,
}

impl Batch {
    /// Binds the batch's columns, in the order both append statements
    /// unnest them, after the parameters `query` already has.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }

    fn new(events: &[NewEvent]) -> Result<Self, StoreError> {
        let mut batch = Batch {
            ids: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
        };
        for event in events {
            batch.ids.push(event.event_id);
            batch.types.push(event.event_type.clone());
            // `limits::check_append` refused versions past the column's range.
            batch
                .versions
                .push(i32::try_from(event.event_version).unwrap_or(i32::MAX));
            batch.payloads.push(event.payload.get().to_owned());
            batch
                .metadata
                .push(serde_json::to_string(&event.metadata).map_err(|error| {
                    StoreError::Backend(format!("cannot serialize metadata: {error}").into())
                })?);
        }
        Ok(batch)
    }
}

/// Refuses a batch that names one event id twice.
fn check_batch(stream: &StreamId, events: &[NewEvent]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    match events.iter().find(|event| !seen.insert(event.event_id)) {
        Some(duplicate) => Err(StoreError::EventIdReused {
            event_id: duplicate.event_id,
            stream: stream.clone(),
        }),
        None => Ok(()),
    }
}

/// Spreads out writers that keep losing races for the same stream's next
/// version: the first retries go at once, later ones after a growing,
/// jittered pause.
async fn pause_after_lost_race(lost_races: u32) {
    if lost_races < 3 {
        return;
    }
    let jitter = u64::from(Uuid::now_v7().as_u128() as u16) % 1000;
    let pause = std::time::Duration::from_micros(u64::from(lost_races.min(20)) * jitter);
    tokio::time::sleep(pause.min(ANY_VERSION_MAX_PAUSE)).await;
}

/// The stream versions an expectation accepts, as an inclusive range.
fn version_bounds(expected: ExpectedVersion) -> (i64, i64) {
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
fn known_version(expected: ExpectedVersion) -> Option<u64> {
    match expected {
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => Some(version),
        ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
    }
}

fn none_if_empty(values: &[String]) -> Option<&[String]> {
    (!values.is_empty()).then_some(values)
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PostgresEventStore {
    /// One append, with the retries of `Any` appends that lost a race.
    async fn try_append(
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

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        cqrskit_core::limits::check_append(stream, &events)?;
        check_batch(stream, &events)?;
        let batch = Batch::new(&events)?;
        let mut result = self.try_append(stream, expected, &events, &batch).await;
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

    async fn read_stream(
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

    async fn replay(
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

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let mut connection = self.db.session().await.map_err(store_error)?;
        let version = self.version_of(&mut connection, stream).await?;
        connection.finish().await.map_err(store_error)?;
        Ok(version)
    }

    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit_to: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.db.session().await.map_err(store_error)?;
        let rows = self
            .read_log_rows_on(&mut connection, after, filter, limit_to, usize::MAX)
            .await?;
        connection.finish().await.map_err(store_error)?;
        rows.into_iter().map(LogRow::into_event).collect()
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let mut events = self
            .fetch_events(self.db.query(&self.sql.events_by_id).bind(vec![event_id]))
            .await?;
        Ok(events.pop())
    }

    async fn events_by_correlation(
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

    async fn events_in_time_range(
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

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let mut session = self.db.session().await.map_err(store_error)?;
        let row = self
            .db
            .query(&self.sql.load_snapshot)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .fetch_optional(&mut *session)
            .await
            .map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let corrupted = |reason: String| StoreError::Corrupted {
            location: format!("snapshot of stream {stream}"),
            reason,
        };
        let version: i64 = row.try_get("version").map_err(store_error)?;
        let schema_version: i32 = row.try_get("schema_version").map_err(store_error)?;
        let state: String = row.try_get("state").map_err(store_error)?;
        Ok(Some(Snapshot {
            stream: stream.clone(),
            version: to_u64(version, "version").map_err(corrupted)?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| corrupted(format!("negative schema version {schema_version}")))?,
            state: RawValue::from_string(state)
                .map_err(|error| corrupted(format!("state is not JSON: {error}")))?,
            taken_at: row.try_get("taken_at").map_err(store_error)?,
        }))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let query = self
            .db
            .query(&self.sql.save_snapshot)
            .bind(&snapshot.stream.aggregate_type)
            .bind(&snapshot.stream.aggregate_id)
            .bind(to_i64(snapshot.version, "version")?)
            .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
            .bind(snapshot.state.get())
            .bind(snapshot.taken_at);
        let mut session = self.db.session().await.map_err(store_error)?;
        query.execute(&mut *session).await.map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        Ok(())
    }
}
