//! Errors of setting the store up, and the mapping of database errors onto
//! the core's [`StoreError`].

use cqrskit_core::StoreError;

use crate::failure::{Failure, classify};

/// What can go wrong configuring or migrating the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schema name that is not a plain lower-case SQL identifier.
    #[error(
        "invalid schema name `{0}`: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit"
    )]
    InvalidSchemaName(String),
    /// The database could not be reached or refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The operation needs a session of its own (an advisory lock, `LISTEN`),
    /// which a transaction-mode pooler does not keep: give the store a direct
    /// pool ([`PostgresEventStore::through_transaction_pooler`](crate::PostgresEventStore::through_transaction_pooler)).
    #[error(
        "`{0}` needs a direct connection to PostgreSQL, not one through a transaction pooler: give the store a direct pool"
    )]
    SessionRequired(&'static str),
    /// The store was connected as if to PostgreSQL directly, and reached a
    /// connection pooler in transaction mode (two of its connections were
    /// served by one PostgreSQL session): sqlx's named statements and the
    /// store's session-long state would then land on other clients'
    /// sessions. Nothing was written.
    #[error(
        "the server at {target} is a connection pooler in transaction mode (two connections were served by one PostgreSQL session, pid {backend}): \
         connect with PostgresEventStore::connect_through_pooler(pooled_url, Some(direct_url)), \
         or set the pooler's pool_mode = session (see docs/postgres.md, \"Behind a connection pooler\")"
    )]
    TransactionPooler {
        /// Where the store connected (host and port).
        target: String,
        /// The PostgreSQL backend both connections reached.
        backend: i32,
    },
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The schema lacks migrations this version ships, or holds them in
    /// another form ([`PostgresEventStore::verify_schema`](crate::PostgresEventStore::verify_schema)).
    #[error("{0}")]
    SchemaNotCurrent(Box<crate::SchemaStatus>),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A unique violation, with the constraint that raised it.
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}

/// A statement refused because the store's schema is older than this version
/// of the crate expects (its migrations were not all applied: a new version
/// deployed before `migrate()` ran, or a schema never migrated). Nothing was
/// written. Found inside [`StoreError::Backend`]; apply the migrations
/// ([`PostgresEventStore::migrate`](crate::PostgresEventStore::migrate), or
/// `cqrs-admin migrate`) and try again.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store's schema is behind this version of cqrskit-postgres (apply its migrations: PostgresEventStore::migrate() or `cqrs-admin migrate`): {source}"
)]
pub struct SchemaBehind {
    /// What PostgreSQL said.
    #[source]
    pub source: sqlx::Error,
}

/// Maps a database error onto the store contract, by its kind
/// ([`classify`]): a transient failure (the connection, none to be had, a
/// refusal for now) is [`StoreError::Unavailable`] (retrying is
/// reasonable), a schema older than the statements is [`SchemaBehind`], the
/// rest [`StoreError::Backend`].
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match classify(&error) {
        Failure::SchemaBehind => StoreError::Backend(Box::new(SchemaBehind { source: error })),
        failure if failure.is_transient() => StoreError::Unavailable(Box::new(error)),
        _ => StoreError::Backend(Box::new(error)),
    }
}

/// Whether `source` (the cause inside a store error) says the connection was
/// lost (cut, or ended by the server), rather than that the pool had none to
/// give or the statement was refused.
pub(crate) fn is_dead_connection(source: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    source
        .downcast_ref::<sqlx::Error>()
        .is_some_and(|error| classify(error) == Failure::ConnectionLost)
}

/// A failed write statement whose transaction commits by itself (an
/// autocommit insert) or whose COMMIT failed: when the database refused it
/// (a constraint, a check, a serialization failure, a read-only standby),
/// nothing was written; when it never left the pool, neither; any other
/// failure (the connection, a reply that could not be read) may have come
/// after the commit, so the outcome is unknown.
pub(crate) fn sent_write_error(error: sqlx::Error) -> StoreError {
    let failure = classify(&error);
    match &error {
        sqlx::Error::Database(_) if !failure.may_have_committed() => store_error(error),
        _ if failure == Failure::NoConnection => StoreError::Unavailable(Box::new(error)),
        _ => StoreError::OutcomeUnknown(Box::new(error)),
    }
}
