//! Document read models in PostgreSQL: one `jsonb` table per read model,
//! loaded and written a batch at a time in the runner's transaction.

use std::collections::HashSet;
use std::marker::PhantomData;

use async_trait::async_trait;
use cqrskit_core::document::{Document, DocumentBatch, DocumentQueries, StoredDocument, Versioned};
use cqrskit_core::{BoxError, EventEnvelope, Projector, StoreError};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::PostgresEventStore;
use crate::database::Database;
use crate::error::{read_model_error, store_error};

/// The store's own tables, which no read model may be named after: its
/// `CREATE TABLE IF NOT EXISTS` would find them and fail further on.
const STORE_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "consumer_instances",
    "consumer_partitions",
    "dead_letters",
    "deadlines",
    "events",
    "inbox",
    "inbox_dead_letters",
    "projection_instances",
    "projection_layouts",
    "projections",
    "snapshots",
];

/// Refuses a read model's table name that is one of the store's tables.
pub(crate) fn refuse_store_table(read_model: &str, table: &str) -> Result<(), BoxError> {
    if STORE_TABLES.contains(&table) {
        return Err(format!(
            "read model `{read_model}` would use the table `{table}`, which is the store's own: \
             give the read model another name"
        )
        .into());
    }
    Ok(())
}

/// A document read model in the store's database: a projector of `D`'s
/// events for a [`ProjectionRunner`](crate::ProjectionRunner) (or, when
/// `D`'s documents are its streams', a
/// [`PartitionedRunner`](crate::PartitionedRunner)), and the read model's
/// [`DocumentQueries`].
///
/// Its table, in the store's schema, is named after the read model
/// (`id text PRIMARY KEY, revision bigint, body jsonb, updated_at
/// timestamptz`, with a GIN index on `body` for
/// [`matching`](DocumentQueries::matching)); the runner creates it before its
/// first batch. Each batch loads every document its events touch in one
/// statement, applies the events in memory and writes the changed
/// documents back in one statement (and removes the deleted in one more),
/// in the transaction that moves the checkpoint: exactly once. A rebuild
/// empties the table first.
pub struct PgDocuments<D> {
    db: Database,
    name: String,
    table: String,
    sql: Statements,
    _document: PhantomData<fn() -> D>,
}

/// The statements, made once from the table's name.
struct Statements {
    create: String,
    index: String,
    truncate: String,
    load: String,
    save: String,
    insert: String,
    delete: String,
    one: String,
    many: String,
    matching: String,
}

impl Statements {
    fn new(name: &str, table: &str) -> Self {
        let columns = "id, revision, body::text AS body";
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 id text COLLATE \"C\" PRIMARY KEY, revision bigint NOT NULL, body jsonb NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now())"
            ),
            index: format!(
                "CREATE INDEX IF NOT EXISTS \"{name}_body\" ON {table} USING gin (body jsonb_path_ops)"
            ),
            truncate: format!("TRUNCATE {table}"),
            // Locked in one order, so that two writers of one read model
            // (an inline projection's appends) wait for each other instead
            // of deadlocking.
            load: format!(
                "SELECT {columns} FROM {table} WHERE id = ANY($1) ORDER BY id COLLATE \"C\" FOR UPDATE"
            ),
            save: format!(
                "UPDATE {table} AS d SET revision = saved.revision, body = saved.body::jsonb, \
                 updated_at = now() \
                 FROM unnest($1::text[], $2::bigint[], $3::text[]) AS saved(id, revision, body) \
                 WHERE d.id = saved.id"
            ),
            insert: format!(
                "INSERT INTO {table} (id, revision, body) \
                 SELECT id, revision, body::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[]) \
                 AS created(id, revision, body) ON CONFLICT (id) DO NOTHING"
            ),
            delete: format!("DELETE FROM {table} WHERE id = ANY($1)"),
            one: format!("SELECT {columns} FROM {table} WHERE id = $1"),
            many: format!(
                "SELECT d.id, d.revision, d.body::text AS body \
                 FROM unnest($1::text[]) WITH ORDINALITY AS wanted(id, n) \
                 JOIN {table} d ON d.id = wanted.id ORDER BY wanted.n"
            ),
            matching: format!(
                "SELECT {columns} FROM {table} WHERE body @> $1::jsonb \
                 AND ($2::text IS NULL OR id COLLATE \"C\" > $2) ORDER BY id COLLATE \"C\" LIMIT $3"
            ),
        }
    }
}

impl<D: Document> PgDocuments<D> {
    /// The read model [`D::NAME`](Document::NAME), in `store`'s schema.
    pub fn new(store: &PostgresEventStore) -> Self {
        Self::named(store, D::NAME.to_owned())
    }

    /// Version `version` of the read model, named `<NAME>_v<version>` (its
    /// projection and its table): a new shape of the documents, built from
    /// the log beside the live version (blue/green). Switch readers when its
    /// runner's lag is zero, then drop the old table.
    pub fn version(store: &PostgresEventStore, version: u32) -> Self {
        Self::named(store, format!("{}_v{version}", D::NAME))
    }

    fn named(store: &PostgresEventStore, name: String) -> Self {
        // `D::NAME` is checked by `#[document]` (lower-case identifier
        // characters); quoting keeps a hand-written one from reaching SQL bare.
        let table = format!("{}.\"{}\"", store.schema().quoted(), name.replace('"', ""));
        Self {
            db: store.database().clone(),
            sql: Statements::new(&name.replace('"', ""), &table),
            name,
            table,
            _document: PhantomData,
        }
    }

    /// The read model's name: its projection's and its table's.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table, schema-qualified and quoted, for a query of your own.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes `documents` with `sql` (an update or an insert of the three
    /// arrays); how many rows it wrote.
    async fn write(
        &self,
        tx: &mut PgConnection,
        sql: &str,
        documents: Vec<StoredDocument>,
    ) -> Result<usize, sqlx::Error> {
        if documents.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(documents.len());
        let mut revisions = Vec::with_capacity(documents.len());
        let mut bodies = Vec::with_capacity(documents.len());
        for doc in documents {
            ids.push(doc.id);
            revisions.push(i64::try_from(doc.revision).unwrap_or(i64::MAX));
            bodies.push(doc.body);
        }
        let done = self
            .db
            .query(sql)
            .bind(ids)
            .bind(revisions)
            .bind(bodies)
            .execute(&mut *tx)
            .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn fetch(
        &self,
        sql: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        )
            -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Versioned<D>>, StoreError> {
        let rows = bind(self.db.query(sql))
            .fetch_all(self.db.pool())
            .await
            .map_err(|error| read_model_error(&self.name, error))?;
        rows.iter()
            .map(|row| Ok(stored(row)?.decode(&self.name)?))
            .collect()
    }
}

/// A document row as the statements select it.
fn stored(row: &sqlx::postgres::PgRow) -> Result<StoredDocument, StoreError> {
    let revision: i64 = row.try_get("revision").map_err(store_error)?;
    Ok(StoredDocument {
        id: row.try_get("id").map_err(store_error)?,
        revision: u64::try_from(revision).unwrap_or_default(),
        body: row.try_get("body").map_err(store_error)?,
    })
}

#[async_trait]
impl<D: Document> Projector<PgConnection> for PgDocuments<D> {
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
        let batch = DocumentBatch::<D>::new(events);
        let ids = batch.ids();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = self
            .db
            .query(&self.sql.load)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        let stored = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
        let writes = batch.apply(&self.name, stored)?;
        // Documents that existed are locked since the load: no one else
        // changes them. A document created meanwhile by another writer of
        // this read model (a partition, an inline projection's append) is
        // not overwritten: the batch fails, and its retry reads it.
        self.write(tx, &self.sql.save, writes.saved).await?;
        let created = writes.created.len();
        let inserted = self.write(tx, &self.sql.insert, writes.created).await?;
        if inserted != created {
            return Err(format!(
                "{} of the {created} documents of read model `{}` that this batch creates were \
                 created meanwhile by another writer; the batch is retried",
                created - inserted,
                self.name
            )
            .into());
        }
        if !writes.deleted.is_empty() {
            self.db
                .query(&self.sql.delete)
                .bind(writes.deleted)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn setup(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        refuse_store_table(&self.name, &self.name)?;
        self.db.query(&self.sql.create).execute(&mut *tx).await?;
        self.db.query(&self.sql.index).execute(&mut *tx).await?;
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.db.query(&self.sql.truncate).execute(&mut *tx).await?;
        Ok(())
    }
}

#[async_trait]
impl<D: Document> DocumentQueries<D> for PgDocuments<D> {
    async fn load(&self, id: &str) -> Result<Option<Versioned<D>>, StoreError> {
        if id.contains('\0') {
            // No document has such an id (none could be stored).
            return Ok(None);
        }
        Ok(self
            .fetch(&self.sql.one, |query| query.bind(id.to_owned()))
            .await?
            .pop())
    }

    async fn load_many(&self, ids: &[&str]) -> Result<Vec<Versioned<D>>, StoreError> {
        let mut seen = HashSet::new();
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| !id.contains('\0') && seen.insert(**id))
            .map(|id| (*id).to_owned())
            .collect();
        self.fetch(&self.sql.many, |query| query.bind(ids)).await
    }

    async fn matching_page(
        &self,
        pattern: &Value,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned<D>>, StoreError> {
        cqrskit_core::document::object_pattern(&self.name, pattern)?;
        let pattern = pattern.to_string();
        let after = after.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.fetch(&self.sql.matching, |query| {
            query.bind(pattern).bind(after).bind(limit)
        })
        .await
    }
}
