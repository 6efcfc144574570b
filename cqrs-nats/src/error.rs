//! The crate's error.

use cqrskit_core::{BoxError, ErrorKind, StoreError};

use crate::CloudEventError;

/// Why a consumer stopped, or refused what it was asked: one error for the
/// crate, whose [`kind`](Error::kind) says what a caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (the inbox, the dead letters, a commit).
    #[error("consumer `{consumer}`: the store failed: {source}")]
    Store {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// NATS failed (fetching, acknowledging, creating the consumer).
    #[error("consumer `{consumer}`: NATS failed: {source}")]
    Nats {
        /// The consumer.
        consumer: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Replaying a dead letter: the handler failed again. The dead letter
    /// stays, and nothing of the attempt was written.
    #[error("consumer `{consumer}`: the handler failed again: {source}")]
    Handler {
        /// The consumer.
        consumer: String,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Replaying a dead letter: the stored message is no CloudEvent; only a
    /// fix of the message itself could help.
    #[error("consumer `{consumer}`: the dead letter is no CloudEvent: {source}")]
    NotACloudEvent {
        /// The consumer.
        consumer: String,
        /// What is wrong with it.
        #[source]
        source: CloudEventError,
    },
}

impl Error {
    /// What kind of failure this is: the store's own kind for a store
    /// failure; NATS failures are [`ErrorKind::Unavailable`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store { source, .. } => source.kind(),
            Error::Nats { .. } => ErrorKind::Unavailable,
            Error::Handler { .. } => ErrorKind::Backend,
            Error::NotACloudEvent { .. } => ErrorKind::CorruptData,
        }
    }
}
