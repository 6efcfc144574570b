//! The PostgreSQL event store: its handle and configuration. Appends,
//! transactional appends, the resolution of refused appends, reads and
//! snapshots each have a module of their own.

mod append;
mod append_in;
mod batch;
mod group_commit;
mod oldest_append;
mod options;
mod pooler_probe;
mod read;
pub(crate) use append::Appender;
pub(crate) use read::{LogRead, LogReader};
mod resolve;
mod snapshot;

pub use group_commit::GroupCommit;
use group_commit::Grouping;
pub use oldest_append::OldestAppend;
pub use options::StoreOptions;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrskit_core::{
    AppendResult, Committed, Conflict, EventQueries, EventStore, ExpectedVersion, LogFilter,
    NewEvent, Position, ReplayRequest, ReplaySink, Snapshot, SnapshotStore, StoreError,
    StoredEvent, StreamId,
};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::database::Database;
use crate::error::{Result, is_dead_connection, sent_write_error, store_error, unique_violation};
use crate::horizon;
use crate::migrate::{self, SchemaStatus};
use crate::notify::{Notifier, channel};
use crate::row::{self, LogRow, to_i64, to_u64};
use crate::schema_name::SchemaName;
use crate::statements::Statements;

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
    /// `None` when group commit is off (see [`StoreOptions::group_commit`]).
    grouping: Option<std::sync::Arc<Grouping>>,
    options: StoreOptions,
}

impl PostgresEventStore {
    /// A store over an existing pool, in schema `public`, with
    /// [`StoreOptions::default`].
    pub fn from_pool(pool: PgPool) -> Self {
        Self::assemble(
            Database::new(pool),
            SchemaName::default(),
            StoreOptions::default(),
        )
    }

    /// The store's parts made for `db`, `schema` and `options`: its
    /// statements, its notifier and its group writer capture all three.
    fn assemble(db: Database, schema: SchemaName, options: StoreOptions) -> Self {
        let notifier = Notifier::new(db.clone(), channel(&schema), options.get_notify_interval());
        Self {
            sql: std::sync::Arc::new(Statements::new(&schema)),
            grouping: options
                .get_group_commit()
                .map(|group_commit| std::sync::Arc::new(Grouping::new(group_commit))),
            floor: std::sync::Arc::default(),
            notifier,
            db,
            schema,
            options,
        }
    }

    /// The same store with `options`: how appends are grouped into commits
    /// and how often readers are woken (see [`StoreOptions`]).
    pub fn with_options(self, options: StoreOptions) -> Self {
        Self::assemble(self.db, self.schema, options)
    }

    /// The store's settings.
    pub fn options(&self) -> StoreOptions {
        self.options
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
    pub fn through_transaction_pooler(self, direct: Option<PgPool>) -> Self {
        Self::assemble(self.db.through_pooler(direct), self.schema, self.options)
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
    /// It refuses a connection pooler in transaction mode (found by two
    /// connections reaching one PostgreSQL session), through which sqlx's
    /// named statements land on other clients' sessions: use
    /// [`connect_through_pooler`](Self::connect_through_pooler) for one.
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
    /// [`Error::Connect`](crate::Error::Connect), naming the host, the port
    /// and the cause, within [`CONNECT_TIMEOUT`] when the database cannot be
    /// reached;
    /// [`Error::TransactionPooler`](crate::Error::TransactionPooler) behind
    /// a pooler in transaction mode.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let target = reach(&options).await?;
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        pooler_probe::refuse_transaction_pooler(&pool, &target).await?;
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
        reach(&pooled).await?;
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
    pub fn with_schema(self, schema: &str) -> Result<Self> {
        Ok(Self::assemble(
            self.db,
            SchemaName::new(schema)?,
            self.options,
        ))
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

    /// Where the schema stands against the migrations this version ships:
    /// applied, pending, applied by a newer version, or applied from another
    /// text. Reads only; through a transaction pooler too.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        migrate::status(&self.db, &self.schema).await
    }

    /// Checks at start-up that the schema has every migration this version
    /// ships, as shipped, so that a deploy that skipped `migrate()` stops
    /// before its first command instead of failing it. Migrations applied by
    /// a newer version (a rolling deploy) pass. A store not told it is
    /// behind a transaction pooler is checked for one too, as
    /// [`connect_with`](Self::connect_with) does: a store built with
    /// [`from_pool`](Self::from_pool) is checked here.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaNotCurrent`](crate::Error::SchemaNotCurrent), naming the
    /// pending, modified or failed migrations;
    /// [`Error::TransactionPooler`](crate::Error::TransactionPooler); database
    /// errors.
    pub async fn verify_schema(&self) -> Result<SchemaStatus> {
        if !self.db.pooled() {
            let options = self.pool().connect_options();
            let target = format!("{}:{}", options.get_host(), options.get_port());
            pooler_probe::refuse_transaction_pooler(self.pool(), &target).await?;
        }
        let status = self.schema_status().await?;
        if status.is_current() {
            Ok(status)
        } else {
            Err(crate::Error::SchemaNotCurrent(Box::new(status)))
        }
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

    /// The store's appends, as a view of what writing needs.
    pub(crate) fn appender(&self) -> Appender<'_> {
        Appender {
            db: &self.db,
            sql: &self.sql,
            notifier: &self.notifier,
            grouping: self.grouping.as_deref(),
        }
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
        self.appender()
            .append_in(connection, stream, expected, events)
            .await
    }

    /// The store's reads, as a view of what reading needs.
    pub(crate) fn reader(&self) -> LogReader<'_> {
        LogReader {
            db: &self.db,
            sql: &self.sql,
            floor: &self.floor,
        }
    }

    /// The schema-qualified name of one of the store's tables.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.schema.quoted())
    }
}

/// How long connecting a store waits for the server's first answer.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One connection to `options`' server, opened and closed, so that a wrong
/// address or a refusal is reported at once with its cause (a pool would
/// retry until its acquire timeout and report only that). Returns the
/// server's `host:port`.
async fn reach(options: &PgConnectOptions) -> Result<String> {
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options));
    match connect.await {
        Ok(Ok(connection)) => {
            // Closing politely is a courtesy; the pool connects anew.
            let _ = connection.close().await;
            Ok(target)
        }
        Ok(Err(source)) => Err(crate::Error::Connect { target, source }),
        Err(_) => Err(crate::Error::Connect {
            source: sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            )),
            target,
        }),
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
        self.appender()
            .append_resending(stream, expected, events, None)
            .await
    }

    async fn append_with_snapshot(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Snapshot,
    ) -> Result<AppendResult, StoreError> {
        self.appender()
            .append_resending(stream, expected, events, Some(snapshot))
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reader().read_stream(stream, from, limit).await
    }

    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        self.reader().replay(request, sink).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let mut connection = self.db.session().await.map_err(store_error)?;
        let version = self.appender().version_of(&mut connection, stream).await?;
        connection.finish().await.map_err(store_error)?;
        Ok(version)
    }

    async fn read_log(
        &self,
        after: Position,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reader().read_log(after, filter, limit).await
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.reader().event_by_id(event_id).await
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    fn queries(&self) -> Option<&dyn EventQueries> {
        Some(self)
    }
}

#[async_trait]
impl EventQueries for PostgresEventStore {
    async fn events_by_correlation(
        &self,
        correlation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reader()
            .events_by_correlation(correlation_id, limit)
            .await
    }

    async fn events_in_time_range(
        &self,
        filter: &LogFilter,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reader()
            .events_in_time_range(filter, from, until, limit)
            .await
    }
}

#[async_trait]
impl SnapshotStore for PostgresEventStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.reader().snapshot_of(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.appender().put_snapshot(snapshot).await
    }
}
