//! Errors of the event store and the command pipeline.
//!
//! Every error names what went wrong and where (stream, version, event type):
//! an operator reading a log line must be able to find the row. Every
//! error of every layer (this crate's, the PostgreSQL store's, the NATS
//! integration's) answers [`kind`](StoreError::kind) with one
//! [`ErrorKind`], so a caller decides what to do (retry, reload, give up,
//! fix the configuration) the same way whatever failed.

use uuid::Uuid;

use crate::{ExpectedVersion, Position, StreamId};

/// What kind of failure an error is, and so what a caller can do about it.
/// Shared by the errors of every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Another writer got there first (a stream's version, a lease): load
    /// again and decide again. Nothing was written.
    Conflict,
    /// The input was refused before anything was written: an event the
    /// store cannot keep, an event id reused with other content, a version
    /// the stream has not reached, a projector that refused an event, a
    /// dead letter already closed.
    Rejected,
    /// What was asked for does not exist (a projection, a dead letter).
    NotFound,
    /// What is stored cannot be read: an event that no longer decodes, a
    /// malformed row. Retrying does not help; fix the code or the data.
    CorruptData,
    /// The back end could not be reached, or refused for now (a timeout, a
    /// lock, a serialization failure, a read-only standby). Nothing is known
    /// to have been written: retrying is reasonable.
    Unavailable,
    /// A write was sent and its answer lost: it may or may not have
    /// happened. Retry only what is idempotent (the same events, the same
    /// command id).
    OutcomeUnknown,
    /// The configuration would double or skip work, or does not fit the
    /// database (a schema not migrated, a pooler, partition counts that
    /// disagree): it refuses to start, and the error names the way out.
    Configuration,
    /// A projection stopped at an event it could not process, and stays
    /// stopped until someone resumes it.
    Stopped,
    /// Anything else: a failure of the back end or of user code (a hook, a
    /// panic) that none of the above describes.
    Backend,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed (after reloading, for
    /// a conflict).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Conflict | ErrorKind::Unavailable)
    }
}

/// A boxed error for user code whose error type the framework does not know
/// (projector handlers, store back ends).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a payload could not be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The stored type name is not one the event enum knows.
    #[error("unknown event type `{event_type}`")]
    UnknownEventType {
        /// The stored type name.
        event_type: String,
    },
    /// The stored schema version cannot be read by this code (written by a
    /// newer version of the application, or no upcaster for it).
    #[error("unsupported schema version {event_version} of event type `{event_type}`")]
    UnsupportedVersion {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        event_version: u32,
    },
    /// The upcaster of an older schema version refused the payload.
    #[error("cannot upcast from schema version {event_version}: {reason}")]
    Upcast {
        /// The stored schema version.
        event_version: u32,
        /// What the upcaster reported.
        reason: Box<str>,
    },
    /// The payload does not match the variant's shape.
    #[error("payload does not match the event: {0}")]
    Json(#[from] serde_json::Error),
}

/// A stored event that could not be decoded, with where it is.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event `{event_type}` (schema version {event_version}) at version {version} of stream {stream}: {source}"
)]
pub struct DecodeError {
    /// The stream holding the event.
    pub stream: StreamId,
    /// The event's version in that stream.
    pub version: u64,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub event_version: u32,
    /// What was wrong.
    #[source]
    pub source: Box<PayloadError>,
}

/// A domain event whose payload could not be serialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize event `{event_type}`: {source}")]
pub struct EncodeError {
    /// The event's type name.
    pub event_type: String,
    /// What serde reported.
    #[source]
    pub source: serde_json::Error,
}

/// Two writers raced and this one lost: the stream was not at the expected version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("concurrency conflict on stream {stream}: expected {expected}, found version {actual}")]
pub struct Conflict {
    /// The stream written to.
    pub stream: StreamId,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's actual last version (0 = no event).
    pub actual: u64,
}

/// What can go wrong talking to an event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// An event id already stored was appended again with different content
    /// (or in a different place); nothing was written.
    #[error("event id {event_id} is already stored with different content (stream {stream})")]
    EventIdReused {
        /// The reused id.
        event_id: Uuid,
        /// The stream the append was for.
        stream: StreamId,
    },
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A new event could not be serialized; nothing was written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The append was refused before anything was written: a value the
    /// store could not store or read back faithfully (see
    /// [`limits`](crate::limits)).
    #[error("{} refused for stream {stream}: {reason}", event_id.map_or_else(|| "append".to_owned(), |id| format!("event {id}")))]
    InvalidEvent {
        /// The stream appended to.
        stream: StreamId,
        /// The event at fault; `None` when the stream id itself is.
        event_id: Option<Uuid>,
        /// What is wrong, and the limit it breaks.
        reason: String,
    },
    /// A projector failed on an event. Inside an append (an inline
    /// projection) the append was rolled back and nothing was stored, and
    /// `checkpoint` is `None`; while catching up it is the last position
    /// processed, to resume from.
    #[error("{source}{}", checkpoint.map_or_else(|| " (nothing was stored)".to_owned(), |at| format!(" (last processed position: {at})")))]
    Projection {
        /// The failure, with the projector and the event.
        #[source]
        source: Box<crate::ProjectionError>,
        /// Where a reader of the log stands: resume after it.
        checkpoint: Option<Position>,
    },
    /// A version was asked for that the stream has not reached.
    #[error("stream {stream} has no version {requested}: it is at version {current}")]
    VersionNotFound {
        /// The stream.
        stream: StreamId,
        /// The version asked for.
        requested: u64,
        /// The stream's last version.
        current: u64,
    },
    /// A stored row is malformed (a column the store cannot read).
    #[error("corrupted record at {location}: {reason}")]
    Corrupted {
        /// Where: table and key, or stream and version.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached (connection refused, dropped, timed
    /// out). Nothing is known to have been written; retrying is reasonable.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The connection failed after the write was sent: the events may or
    /// may not be stored (the answer to a commit was lost). Appending the
    /// same events again (same ids, same content) is safe and tells which:
    /// it succeeds with [`already_stored`](crate::AppendResult::already_stored)
    /// when the first attempt was stored.
    #[error(
        "outcome unknown: the connection failed after the append was sent, so it may have been stored; append the same events again to find out: {0}"
    )]
    OutcomeUnknown(#[source] BoxError),
    /// Any other failure of the store's back end.
    #[error("event store failure: {0}")]
    Backend(#[source] BoxError),
    /// A document read model's document could not be read or written
    /// (one that no longer reads as its type, a pattern that is no object).
    #[error(transparent)]
    Document(#[from] crate::document::DocumentError),
}

impl StoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::EventIdReused { .. }
            | StoreError::Encode(_)
            | StoreError::InvalidEvent { .. }
            | StoreError::Projection { .. }
            | StoreError::VersionNotFound { .. } => ErrorKind::Rejected,
            StoreError::Decode(_) | StoreError::Corrupted { .. } => ErrorKind::CorruptData,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::OutcomeUnknown(_) => ErrorKind::OutcomeUnknown,
            StoreError::Backend(_) => ErrorKind::Backend,
            StoreError::Document(error) => error.kind(),
        }
    }

    /// Whether retrying the same operation may succeed: a conflict (after
    /// reloading) or an unreachable store.
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// Whether the write may have happened although it failed: retry only
    /// what is idempotent (the same events, the same command id).
    pub fn is_outcome_unknown(&self) -> bool {
        self.kind() == ErrorKind::OutcomeUnknown
    }
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate rejected the command (its own domain error). Nothing was stored.
    #[error("command rejected: {0}")]
    Rejected(#[source] E),
    /// Another writer changed the aggregate first, on every attempt the retry
    /// policy allowed. Nothing was stored.
    #[error(transparent)]
    Conflict(Conflict),
    /// The store's answer to the append was lost and sending it again did
    /// not get one: the command's events may or may not be stored. Carry
    /// the command out again with
    /// [`execute_once`](crate::CommandPipeline::execute_once) and this
    /// `command_id` once the store is back: it applies the command at most
    /// once and returns what the first execution stored, if it did.
    #[error("outcome of command {command_id} unknown: {source}")]
    OutcomeUnknown {
        /// The command's id.
        command_id: uuid::Uuid,
        /// The last failure.
        #[source]
        source: StoreError,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl<E> From<StoreError> for CommandError<E> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(conflict) => CommandError::Conflict(conflict),
            other => CommandError::Store(other),
        }
    }
}

impl<E> CommandError<E> {
    /// What kind of failure this is: a domain rejection is
    /// [`ErrorKind::Rejected`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::Rejected(_) => ErrorKind::Rejected,
            CommandError::Conflict(_) => ErrorKind::Conflict,
            CommandError::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            CommandError::Store(error) => error.kind(),
        }
    }

    /// The domain error, when the aggregate rejected the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(error) => Some(error),
            _ => None,
        }
    }
}
