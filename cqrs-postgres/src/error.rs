//! The crate's error, and the mapping of database errors onto the core's
//! [`StoreError`].

use cqrskit_core::{BoxError, ErrorKind, Position, SLICES, StoreError, StreamId};
use uuid::Uuid;

use crate::failure::{Failure, classify};

/// What can go wrong with the PostgreSQL store, its projection runners and
/// its operator's commands: one error for the crate, whose
/// [`kind`](Error::kind) says what a caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Setting the store up.
    /// A schema name that is not a plain lower-case SQL identifier.
    #[error(
        "invalid schema name `{0}`: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit"
    )]
    InvalidSchemaName(String),
    /// No connection could be made when the store was connected: nothing
    /// answers at that host and port, the server refused (a password, a
    /// database that does not exist), or it did not answer within the
    /// connect timeout. The cause is the first attempt's, not a pool's
    /// timeout.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `host:port`, as the connection options name it.
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
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

    // The store's contract: appends, reads, the runner's own tables.
    /// The store failed: reading the log, the runner's own tables, an
    /// operator's query.
    #[error(transparent)]
    Store(#[from] StoreError),

    // Projection runners.
    /// This runner does not hold the projection's lease (another runner took
    /// it over, or it was never acquired); it applied nothing.
    #[error("runner `{owner}` does not hold the lease of projection `{projection}`")]
    NotLeaseholder {
        /// The projection.
        projection: String,
        /// This runner's owner id.
        owner: String,
    },
    /// The failure policy stopped the projection at a poison event. Nothing
    /// after it was applied; fix the projector or the data, then resume.
    #[error(
        "projection `{projection}` stopped at event {} ({}, version {} of {}, position {}) after {attempts} attempts: {reason}",
        at.event_id, at.event_type, at.version, at.stream, at.position
    )]
    Stopped {
        /// The projection.
        projection: String,
        /// The event it stopped at.
        at: Box<StoppedAt>,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The projection was stopped earlier (see [`Error::Stopped`]) and
    /// has not been resumed.
    #[error("projection `{projection}` is stopped: {reason}")]
    StillStopped {
        /// The projection.
        projection: String,
        /// Why it stopped.
        reason: String,
    },
    /// The projector subscribes to other event types than the projection
    /// recorded: applying on would skip, for good, events of the added
    /// types that the checkpoint already passed (a new projector version
    /// taking over from an old one), or drop types the projection relied on
    /// (an old version coming back). Nothing was applied.
    #[error(
        "projection `{projection}` was built for other event types (added: {added:?}, removed: {removed:?});          events of added types before its checkpoint were never applied. Rebuild it (ProjectionRunner::rebuild),          or run the new projector under a new name beside it (blue/green); if the change needs no backfill,          record it with ProjectionRunner::accept_subscription"
    )]
    SubscriptionChanged {
        /// The projection.
        projection: String,
        /// Types the projector declares that the projection did not
        /// subscribe to, of which the log holds events before the checkpoint.
        added: Vec<String>,
        /// Types the projection subscribed to that the projector no longer
        /// declares.
        removed: Vec<String>,
    },
    /// The projector's setup hook failed; nothing was applied.
    #[error("setting up projection `{projection}` failed: {source}")]
    Setup {
        /// The projection.
        projection: String,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// A partitioned projection cannot be split as asked; nothing changed.
    #[error("cannot split projection `{projection}`: {reason}")]
    Rescale {
        /// The projection.
        projection: String,
        /// Why.
        reason: String,
    },
    /// The projection runs in another number of partitions than this
    /// runner was made for (1: unpartitioned): running both would apply
    /// the same events twice, so this runner refuses to take a lease.
    #[error(
        "projection `{projection}` runs in {recorded} partition(s) (1: unpartitioned), and this runner \
         was made for {configured}: it refuses to start, since both would apply the same events. \
         To change the count, stop every instance and call PartitionedRunner::split_from({recorded}) \
         on the new split (a multiple of {recorded}); for a merge, run the projector under a new \
         name (a new version, rebuilt from the start)"
    )]
    PartitionsDisagree {
        /// The projection.
        projection: String,
        /// The partitions recorded for it.
        recorded: usize,
        /// The partitions this runner was made for.
        configured: usize,
    },
    /// The runner's configuration does not fit the projector: one that
    /// requires log order ([`Projector::requires_log_order`], a relay) run
    /// in partitions or with a policy that parks events, or one that refuses
    /// partitions ([`Projector::partition_refusal`], a document read model
    /// gathering several streams) run in partitions. It refuses to start;
    /// the reason names what to change.
    ///
    /// [`Projector::requires_log_order`]: cqrskit_core::Projector::requires_log_order
    /// [`Projector::partition_refusal`]: cqrskit_core::Projector::partition_refusal
    #[error("projection `{projection}` refuses to start: {reason}")]
    Misconfigured {
        /// The projection.
        projection: String,
        /// What does not fit, and what to change.
        reason: String,
    },
    /// A partition's task ended by a panic outside the projector (whose
    /// panics fail their event instead).
    #[error("a partition of projection `{projection}` failed: {reason}")]
    PartitionFailed {
        /// The projection.
        projection: String,
        /// The panic.
        reason: String,
    },
    /// The projector's reset hook failed; the rebuild did not start.
    #[error("resetting projection `{projection}` failed: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// A partition that is not one.
    #[error(
        "partition {index} of {count} is not one: the count must be 1 to {SLICES} and the index below it"
    )]
    InvalidPartition {
        /// The index asked for.
        index: usize,
        /// The count asked for.
        count: usize,
    },

    // An operator's commands.
    /// No projection of that name has a row: it never ran in this schema.
    #[error("no projection named `{0}` has run in this schema")]
    UnknownProjection(String),
    /// No dead letter has that id.
    #[error("no dead letter has the id {0}")]
    UnknownDeadLetter(i64),
    /// The dead letter is closed already.
    #[error("dead letter {0} is closed already")]
    DeadLetterClosed(i64),
    /// No dead letter of that consumer has that source and id.
    #[error("consumer `{consumer}` has no dead letter {message_id} of source `{message_source}`")]
    UnknownConsumerDeadLetter {
        /// The consumer.
        consumer: String,
        /// The message's source.
        message_source: String,
        /// The message's id.
        message_id: String,
    },
    /// A split consumer's partitions are still read by a running instance:
    /// its split is not changed under it.
    #[error(
        "consumer `{0}` is still running (a partition's lease runs): stop every instance first"
    )]
    ConsumerRunning(String),
    /// The consumer's dead letter is closed already (replayed or skipped).
    #[error(
        "dead letter {message_id} of source `{message_source}` of consumer `{consumer}` is closed already"
    )]
    ConsumerDeadLetterClosed {
        /// The consumer.
        consumer: String,
        /// The message's source.
        message_source: String,
        /// The message's id.
        message_id: String,
    },
    /// A partitioned projection is not rebuilt in place: one partition's
    /// reset would clear the read model of every partition, and the
    /// partitions' runners do not reset together.
    #[error(
        "`{0}` is (a partition of) a partitioned projection: rebuild the projection under a new name instead (see the scaling guide)"
    )]
    PartitionRebuild(String),
}

/// The event a projection stopped at ([`Error::Stopped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoppedAt {
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in its stream.
    pub version: u64,
    /// Its log position.
    pub position: Position,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(error) => error.kind(),
            Error::Connect { source, .. } => match classify(source) {
                failure if failure.is_transient() => ErrorKind::Unavailable,
                _ => ErrorKind::Configuration,
            },
            Error::Database(error) => match classify(error) {
                failure if failure.is_transient() => ErrorKind::Unavailable,
                Failure::SchemaBehind => ErrorKind::Configuration,
                _ => ErrorKind::Backend,
            },
            Error::InvalidSchemaName(_)
            | Error::SessionRequired(_)
            | Error::TransactionPooler { .. }
            | Error::SchemaNotCurrent(_)
            | Error::SubscriptionChanged { .. }
            | Error::Rescale { .. }
            | Error::PartitionsDisagree { .. }
            | Error::Misconfigured { .. }
            | Error::InvalidPartition { .. }
            | Error::PartitionRebuild(_) => ErrorKind::Configuration,
            Error::NotLeaseholder { .. } | Error::ConsumerRunning(_) => ErrorKind::Conflict,
            Error::Stopped { .. } | Error::StillStopped { .. } => ErrorKind::Stopped,
            Error::UnknownProjection(_)
            | Error::UnknownDeadLetter(_)
            | Error::UnknownConsumerDeadLetter { .. } => ErrorKind::NotFound,
            Error::DeadLetterClosed(_) | Error::ConsumerDeadLetterClosed { .. } => {
                ErrorKind::Rejected
            }
            Error::Migrate(_)
            | Error::Setup { .. }
            | Error::Reset { .. }
            | Error::PartitionFailed { .. } => ErrorKind::Backend,
        }
    }
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

/// A failed query of a document or window read model's own tables: a
/// table that does not exist yet means the read model was not set up.
pub(crate) fn read_model_error(read_model: &str, error: sqlx::Error) -> StoreError {
    let missing_table = error
        .as_database_error()
        .and_then(|database| database.code())
        .is_some_and(|code| code == "42P01");
    if missing_table {
        return cqrskit_core::document::DocumentError::NotSetUp {
            read_model: read_model.to_owned(),
        }
        .into();
    }
    store_error(error)
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

/// A database error, as the store reports it.
pub(crate) fn db(error: sqlx::Error) -> Error {
    Error::Store(store_error(error))
}
