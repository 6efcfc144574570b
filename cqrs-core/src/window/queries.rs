//! Reading windows: a key's windows over a time range, those holding an
//! instant, the latest, and how many of its events came too late.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::document::Document;

/// One window of one key, as a query answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window<D> {
    /// The key.
    pub key: String,
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// The instant after its last.
    pub end: DateTime<Utc>,
    /// How many events changed it.
    pub revision: u64,
    /// Its aggregate.
    pub value: D,
    /// Whether it is closed: the key's watermark passed its end by the
    /// allowed lateness, so it will not change again (its figure is final).
    pub closed: bool,
}

/// The queries every store's windows answer, so a query handler is written
/// once for the in-memory store and PostgreSQL. They read what the
/// projection has applied (wait for it first to read your own writes).
#[async_trait]
pub trait WindowQueries<D: Document>: Send + Sync {
    /// The windows of `key` that start in `[from, to)`, oldest first.
    ///
    /// # Errors
    ///
    /// The store's error; a stored window that no longer reads as `D` is
    /// [`StoreError::Document`].
    async fn windows(
        &self,
        key: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Window<D>>, StoreError>;

    /// The windows of `key` that hold `time` (one tumbling window, `size /
    /// hop` hopping ones, at most one session), oldest first.
    ///
    /// # Errors
    ///
    /// As [`windows`](Self::windows).
    async fn at(&self, key: &str, time: DateTime<Utc>) -> Result<Vec<Window<D>>, StoreError>;

    /// The window of `key` that starts last: the current one, while it is
    /// open.
    ///
    /// # Errors
    ///
    /// As [`windows`](Self::windows).
    async fn latest(&self, key: &str) -> Result<Option<Window<D>>, StoreError>;

    /// How many of `key`'s events came too late for every window they fall
    /// in, and changed nothing.
    ///
    /// # Errors
    ///
    /// The store's error.
    async fn late_events(&self, key: &str) -> Result<u64, StoreError>;
}
