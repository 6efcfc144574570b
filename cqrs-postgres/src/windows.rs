//! Windowed read models in PostgreSQL: a table of windows and a table of
//! keys per read model, loaded and written a batch at a time in the
//! runner's transaction.

use std::marker::PhantomData;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrskit_core::document::Document;
use cqrskit_core::window::{
    KeyState, StoredWindow, Window, WindowBatch, WindowQueries, WindowSpec, log_late,
};
use cqrskit_core::{BoxError, EventEnvelope, Projector, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::PostgresEventStore;
use crate::database::Database;
use crate::documents::refuse_store_table;
use crate::error::{read_model_error, store_error};

/// A windowed read model in the store's database: a projector of `D`'s
/// events for a [`ProjectionRunner`](crate::ProjectionRunner) (or, when its
/// key is the event's stream, a [`PartitionedRunner`](crate::PartitionedRunner)),
/// and the read model's [`WindowQueries`].
///
/// Two tables in the store's schema, named after the read model:
/// `<name>` holds the windows (`key, window_start, window_end, revision,
/// body jsonb`, keyed by key and start) and `<name>_keys` each key's
/// watermark and late count. The runner creates them before its first batch
/// and records the windows' specification on the table; a runner with
/// another specification (another size, hop, gap or lateness) refuses to
/// set up, since its windows would not line up with those stored: run it as
/// a new version. Each batch loads its keys and the windows its events fall
/// in with two statements, applies the events in memory, and writes the
/// changed windows and keys back in the transaction that moves the
/// checkpoint: exactly once.
pub struct PgWindows<D: Document> {
    db: Database,
    name: String,
    spec: WindowSpec<D::Event>,
    windows: String,
    keys: String,
    sql: Statements,
    _document: PhantomData<fn() -> D>,
}

/// The statements, made once from the tables' names.
struct Statements {
    create_windows: String,
    create_keys: String,
    recorded_spec: String,
    truncate: String,
    load_keys: String,
    load_windows: String,
    load_sessions: String,
    save_windows: String,
    delete_windows: String,
    save_keys: String,
    insert_keys: String,
    between: String,
    at: String,
    latest: String,
    late: String,
}

impl Statements {
    fn new(windows: &str, keys: &str) -> Self {
        let columns =
            "w.key, w.window_start, w.window_end, w.revision, w.body::text AS body, k.watermark";
        let from = format!("{windows} w LEFT JOIN {keys} k ON k.key = w.key");
        Self {
            create_windows: format!(
                "CREATE TABLE IF NOT EXISTS {windows} (\
                 key text NOT NULL, window_start timestamptz NOT NULL, window_end timestamptz NOT NULL, \
                 revision bigint NOT NULL, body jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (key, window_start))"
            ),
            create_keys: format!(
                "CREATE TABLE IF NOT EXISTS {keys} (\
                 key text PRIMARY KEY, watermark timestamptz, late bigint NOT NULL DEFAULT 0)"
            ),
            recorded_spec: "SELECT obj_description($1::regclass, 'pg_class')".to_owned(),
            truncate: format!("TRUNCATE {windows}, {keys}"),
            // Locked in one order: two writers of one read model (an inline
            // projection's appends) then take turns per key.
            load_keys: format!(
                "SELECT key, watermark, late FROM {keys} WHERE key = ANY($1) \
                 ORDER BY key COLLATE \"C\" FOR UPDATE"
            ),
            load_windows: format!(
                "SELECT w.key, w.window_start, w.window_end, w.revision, w.body::text AS body \
                 FROM unnest($1::text[], $2::timestamptz[]) AS wanted(key, window_start) \
                 JOIN {windows} w ON w.key = wanted.key AND w.window_start = wanted.window_start"
            ),
            load_sessions: format!(
                "SELECT w.key, w.window_start, w.window_end, w.revision, w.body::text AS body \
                 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS span(key, lo, hi) \
                 JOIN {windows} w ON w.key = span.key AND w.window_start < span.hi AND w.window_end > span.lo"
            ),
            save_windows: format!(
                "INSERT INTO {windows} (key, window_start, window_end, revision, body) \
                 SELECT key, window_start, window_end, revision, body::jsonb \
                 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::text[]) \
                 AS saved(key, window_start, window_end, revision, body) \
                 ON CONFLICT (key, window_start) DO UPDATE SET window_end = excluded.window_end, \
                 revision = excluded.revision, body = excluded.body, updated_at = now()"
            ),
            delete_windows: format!(
                "DELETE FROM {windows} w USING unnest($1::text[], $2::timestamptz[]) AS gone(key, window_start) \
                 WHERE w.key = gone.key AND w.window_start = gone.window_start"
            ),
            save_keys: format!(
                "UPDATE {keys} AS k SET watermark = saved.watermark, late = saved.late \
                 FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS saved(key, watermark, late) \
                 WHERE k.key = saved.key"
            ),
            insert_keys: format!(
                "INSERT INTO {keys} (key, watermark, late) \
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) \
                 ON CONFLICT (key) DO NOTHING"
            ),
            between: format!(
                "SELECT {columns} FROM {from} WHERE w.key = $1 AND w.window_start >= $2 \
                 AND w.window_start < $3 ORDER BY w.window_start"
            ),
            at: format!(
                "SELECT {columns} FROM {from} WHERE w.key = $1 AND w.window_start <= $2 \
                 AND w.window_end > $2 ORDER BY w.window_start"
            ),
            latest: format!(
                "SELECT {columns} FROM {from} WHERE w.key = $1 ORDER BY w.window_start DESC LIMIT 1"
            ),
            late: format!("SELECT late FROM {keys} WHERE key = $1"),
        }
    }
}

fn stored_window(row: &PgRow) -> Result<StoredWindow, sqlx::Error> {
    let revision: i64 = row.try_get("revision")?;
    Ok(StoredWindow {
        key: row.try_get("key")?,
        start: row.try_get("window_start")?,
        end: row.try_get("window_end")?,
        revision: u64::try_from(revision).unwrap_or_default(),
        body: row.try_get("body")?,
    })
}

impl<D: Document> PgWindows<D> {
    /// The read model [`D::NAME`](Document::NAME), in `store`'s schema,
    /// windowed by `spec`.
    pub fn new(store: &PostgresEventStore, spec: WindowSpec<D::Event>) -> Self {
        Self::named(store, D::NAME.to_owned(), spec)
    }

    /// Version `version`, named `<NAME>_v<version>` (its projection and
    /// tables): another window size or lateness, built from the log beside
    /// the live version.
    pub fn version(store: &PostgresEventStore, spec: WindowSpec<D::Event>, version: u32) -> Self {
        Self::named(store, format!("{}_v{version}", D::NAME), spec)
    }

    fn named(store: &PostgresEventStore, name: String, spec: WindowSpec<D::Event>) -> Self {
        let bare = name.replace('"', "");
        let schema = store.schema().quoted();
        let windows = format!("{schema}.\"{bare}\"");
        let keys = format!("{schema}.\"{bare}_keys\"");
        Self {
            db: store.database().clone(),
            sql: Statements::new(&windows, &keys),
            name,
            spec,
            windows,
            keys,
            _document: PhantomData,
        }
    }

    /// The read model's name: its projection's and its tables'.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The windows' table, schema-qualified and quoted, for a query of
    /// your own.
    pub fn table(&self) -> &str {
        &self.windows
    }

    /// The keys' table (watermark and late count per key).
    pub fn keys_table(&self) -> &str {
        &self.keys
    }

    /// The windows' specification.
    pub fn spec(&self) -> &WindowSpec<D::Event> {
        &self.spec
    }

    /// Writes key states with `sql` (an update or an insert of the three
    /// arrays); how many rows it wrote.
    async fn write_keys(
        &self,
        tx: &mut PgConnection,
        sql: &str,
        states: Vec<KeyState>,
    ) -> Result<usize, sqlx::Error> {
        if states.is_empty() {
            return Ok(0);
        }
        let mut keys = Vec::with_capacity(states.len());
        let mut watermarks = Vec::with_capacity(states.len());
        let mut late = Vec::with_capacity(states.len());
        for state in states {
            keys.push(state.key);
            watermarks.push(state.watermark);
            late.push(i64::try_from(state.late).unwrap_or(i64::MAX));
        }
        let done = self
            .db
            .query(sql)
            .bind(keys)
            .bind(watermarks)
            .bind(late)
            .execute(&mut *tx)
            .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn fetch(
        &self,
        sql: &str,
        key: &str,
        times: &[DateTime<Utc>],
    ) -> Result<Vec<Window<D>>, StoreError> {
        let mut query = self.db.query(sql).bind(key.to_owned());
        for time in times {
            query = query.bind(*time);
        }
        let rows = query
            .fetch_all(self.db.pool())
            .await
            .map_err(|error| read_model_error(&self.name, error))?;
        rows.iter()
            .map(|row| {
                let stored = stored_window(row).map_err(store_error)?;
                let watermark: Option<DateTime<Utc>> =
                    row.try_get("watermark").map_err(store_error)?;
                Ok(stored.into_window(&self.name, &self.spec, watermark)?)
            })
            .collect()
    }
}

#[async_trait]
impl<D: Document> Projector<PgConnection> for PgWindows<D> {
    type Event = D::Event;

    cqrskit_core::__document_projector_basics!(D);

    async fn project(
        &self,
        event: &EventEnvelope<D::Event>,
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), tx).await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<D::Event>],
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        let batch = WindowBatch::<D>::new(events, &self.spec);
        let needs = batch.needs();
        if needs.keys.is_empty() {
            return Ok(());
        }
        let keys = self
            .db
            .query(&self.sql.load_keys)
            .bind(&needs.keys)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let late: i64 = row.try_get("late")?;
                Ok(KeyState {
                    key: row.try_get("key")?,
                    watermark: row.try_get("watermark")?,
                    late: u64::try_from(late).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let rows = if needs.sessions.is_empty() {
            let (keys, starts): (Vec<String>, Vec<DateTime<Utc>>) =
                needs.windows.into_iter().unzip();
            self.db
                .query(&self.sql.load_windows)
                .bind(keys)
                .bind(starts)
                .fetch_all(&mut *tx)
                .await?
        } else {
            let mut keys = Vec::new();
            let mut los = Vec::new();
            let mut his = Vec::new();
            for (key, lo, hi) in needs.sessions {
                keys.push(key);
                los.push(lo);
                his.push(hi);
            }
            self.db
                .query(&self.sql.load_sessions)
                .bind(keys)
                .bind(los)
                .bind(his)
                .fetch_all(&mut *tx)
                .await?
        };
        let windows = rows
            .iter()
            .map(stored_window)
            .collect::<Result<Vec<_>, _>>()?;
        let writes = batch.apply(&self.name, keys, windows)?;
        log_late(&self.name, &writes.late);
        // Keys seen for the first time go first: one created meanwhile by
        // another writer of this read model (a partition, an inline
        // projection's append) fails the batch before any of its windows
        // is written, and the retry reads them.
        let new_keys = writes.new_keys.len();
        let inserted = self
            .write_keys(tx, &self.sql.insert_keys, writes.new_keys)
            .await?;
        if inserted != new_keys {
            return Err(format!(
                "{} of the {new_keys} keys of read model `{}` that this batch starts were \
                 started meanwhile by another writer; the batch is retried",
                new_keys - inserted,
                self.name
            )
            .into());
        }
        if !writes.deleted.is_empty() {
            let (keys, starts): (Vec<String>, Vec<DateTime<Utc>>) =
                writes.deleted.into_iter().unzip();
            self.db
                .query(&self.sql.delete_windows)
                .bind(keys)
                .bind(starts)
                .execute(&mut *tx)
                .await?;
        }
        if !writes.saved.is_empty() {
            let count = writes.saved.len();
            let (mut keys, mut starts, mut ends, mut revisions, mut bodies) = (
                Vec::with_capacity(count),
                Vec::with_capacity(count),
                Vec::with_capacity(count),
                Vec::with_capacity(count),
                Vec::with_capacity(count),
            );
            for window in writes.saved {
                keys.push(window.key);
                starts.push(window.start);
                ends.push(window.end);
                revisions.push(i64::try_from(window.revision).unwrap_or(i64::MAX));
                bodies.push(window.body);
            }
            self.db
                .query(&self.sql.save_windows)
                .bind(keys)
                .bind(starts)
                .bind(ends)
                .bind(revisions)
                .bind(bodies)
                .execute(&mut *tx)
                .await?;
        }
        self.write_keys(tx, &self.sql.save_keys, writes.keys)
            .await?;
        Ok(())
    }

    async fn setup(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        refuse_store_table(&self.name, &self.name)?;
        refuse_store_table(&self.name, &format!("{}_keys", self.name))?;
        self.db
            .query(&self.sql.create_windows)
            .execute(&mut *tx)
            .await?;
        self.db
            .query(&self.sql.create_keys)
            .execute(&mut *tx)
            .await?;
        let configured = self.spec.describe();
        let recorded: Option<String> = self
            .db
            .query_scalar(&self.sql.recorded_spec)
            .bind(&self.windows)
            .fetch_one(&mut *tx)
            .await?;
        match recorded {
            Some(recorded) if recorded == configured => Ok(()),
            Some(recorded) => Err(format!(
                "the windows of `{}` were built as {recorded}; this runner has {configured}: \
                 run the new windows as a new version (PgWindows::version), or go back",
                self.name
            )
            .into()),
            None => {
                // A comment takes no bind parameter; the text is ours (numbers and words).
                self.db
                    .query(&format!(
                        "COMMENT ON TABLE {} IS '{}'",
                        self.windows,
                        configured.replace('\'', "")
                    ))
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            }
        }
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.db.query(&self.sql.truncate).execute(&mut *tx).await?;
        Ok(())
    }
}

#[async_trait]
impl<D: Document> WindowQueries<D> for PgWindows<D> {
    async fn windows(
        &self,
        key: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Window<D>>, StoreError> {
        self.fetch(&self.sql.between, key, &[from, to]).await
    }

    async fn at(&self, key: &str, time: DateTime<Utc>) -> Result<Vec<Window<D>>, StoreError> {
        self.fetch(&self.sql.at, key, &[time]).await
    }

    async fn latest(&self, key: &str) -> Result<Option<Window<D>>, StoreError> {
        Ok(self.fetch(&self.sql.latest, key, &[]).await?.pop())
    }

    async fn late_events(&self, key: &str) -> Result<u64, StoreError> {
        let late: Option<i64> = self
            .db
            .query_scalar(&self.sql.late)
            .bind(key.to_owned())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|error| read_model_error(&self.name, error))?;
        Ok(late.and_then(|late| u64::try_from(late).ok()).unwrap_or(0))
    }
}
