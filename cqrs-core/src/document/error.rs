//! What goes wrong with a document: one that no longer reads, one that
//! cannot be written, and a document's own error.

use crate::BoxError;

/// A document that could not be read, written or changed. Names the read
/// model and the document's id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// A stored document does not deserialize as the document type: its
    /// shape changed without a rebuild. Rebuild the read model, or give the
    /// new shape a new version (a new table) and switch readers when it has
    /// caught up.
    #[error(
        "document `{id}` of read model `{read_model}` does not read as its type: {source}; \
         rebuild the read model or run the new shape as a new version"
    )]
    Decode {
        /// The read model.
        read_model: String,
        /// The document.
        id: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A document that cannot be stored so as to read back: it does not
    /// serialize, or holds what the store refuses (a NUL character, nesting
    /// past the limit, a size past the limit). Nothing of its batch is
    /// written.
    #[error("document `{id}` of read model `{read_model}` cannot be stored: {reason}")]
    Encode {
        /// The read model.
        read_model: String,
        /// The document.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A query of a read model whose table does not exist yet: its
    /// runner has not set it up (the runner creates it before its first
    /// batch, or on `setup()`).
    #[error(
        "read model `{read_model}` is not set up: its table does not exist yet; run its runner's \
         setup() (or start it on the application host) before serving queries"
    )]
    NotSetUp {
        /// The read model.
        read_model: String,
    },
    /// A query by JSON whose pattern is not an object.
    #[error(
        "a query of read model `{read_model}` by JSON takes an object pattern, not `{pattern}`"
    )]
    Pattern {
        /// The read model.
        read_model: String,
        /// The pattern given.
        pattern: String,
    },
    /// The document's `#[apply]` method failed on an event.
    #[error("document `{id}` of read model `{read_model}` refused the event: {source}")]
    Apply {
        /// The read model.
        read_model: String,
        /// The document.
        id: String,
        /// The method's error.
        #[source]
        source: BoxError,
    },
}

impl DocumentError {
    /// What kind of failure this is: a document that does not read back is
    /// corrupt data; one that cannot be stored, a bad pattern or a refused
    /// event are rejected.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            DocumentError::Decode { .. } => crate::ErrorKind::CorruptData,
            DocumentError::NotSetUp { .. } => crate::ErrorKind::Configuration,
            DocumentError::Encode { .. }
            | DocumentError::Pattern { .. }
            | DocumentError::Apply { .. } => crate::ErrorKind::Rejected,
        }
    }
}
