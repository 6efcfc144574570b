//! Reading documents: by id, by ids, and by the JSON they contain.

use async_trait::async_trait;
use serde_json::Value;

use super::Document;
use crate::StoreError;

/// A document with its id and revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<D> {
    /// The document's id.
    pub id: String,
    /// How many events changed it since it was created: an entity tag for
    /// an HTTP answer, or a check that a reader saw a newer state.
    pub revision: u64,
    /// The document.
    pub document: D,
}

/// The queries every store's documents answer, so a query handler is
/// written once for the in-memory store and PostgreSQL.
///
/// They read what the projection has applied; a caller that must see its
/// own command waits for the projection first (read-your-writes: the
/// PostgreSQL runner's `wait_for`, `InMemoryRunner::poll` in memory).
#[async_trait]
pub trait DocumentQueries<D: Document>: Send + Sync {
    /// The document `id`, if it exists.
    ///
    /// # Errors
    ///
    /// The store's error; a stored document that no longer reads as `D` is
    /// [`StoreError::Document`] with a [`DocumentError::Decode`](super::DocumentError::Decode).
    async fn load(&self, id: &str) -> Result<Option<Versioned<D>>, StoreError>;

    /// The documents of `ids` that exist, in the order of `ids` (each once).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    async fn load_many(&self, ids: &[&str]) -> Result<Vec<Versioned<D>>, StoreError>;

    /// Every document that contains `pattern` (a JSON object: `{"customer_id":
    /// "c-1"}`, or nested `{"address": {"city": "Lyon"}}`), by id, with the
    /// rules of PostgreSQL's `jsonb @>` ([`contains`](super::contains)).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load); a pattern that is not an object is
    /// [`DocumentError::Pattern`](super::DocumentError::Pattern).
    async fn matching(&self, pattern: &Value) -> Result<Vec<Versioned<D>>, StoreError> {
        self.matching_page(pattern, None, usize::MAX).await
    }

    /// One page of [`matching`](Self::matching): at most `limit` documents
    /// that contain `pattern`, with ids after `after` (all when `None`), by
    /// id. Pass the last id of a page to get the next; an empty page is the
    /// end. Ids are ordered by their bytes (UTF-8), in every store.
    ///
    /// # Errors
    ///
    /// As [`matching`](Self::matching).
    async fn matching_page(
        &self,
        pattern: &Value,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned<D>>, StoreError>;
}

/// Refuses a pattern for [`DocumentQueries::matching`] that is not a JSON
/// object.
///
/// # Errors
///
/// [`DocumentError::Pattern`](super::DocumentError::Pattern), naming the
/// read model and the pattern.
pub fn object_pattern(read_model: &str, pattern: &Value) -> Result<(), super::DocumentError> {
    if pattern.is_object() {
        Ok(())
    } else {
        Err(super::DocumentError::Pattern {
            read_model: read_model.to_owned(),
            pattern: pattern.to_string(),
        })
    }
}
