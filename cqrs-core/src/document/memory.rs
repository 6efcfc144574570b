//! Documents kept in memory: the read model of tests and demos, with the
//! same batches, checks and queries as a database's.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::Value;

use super::batch::StoredDocument;
use super::{Document, DocumentBatch, DocumentError, DocumentQueries, Versioned};
use crate::{BoxError, EventEnvelope, Projector, StoreError};

/// A document read model in memory: a projector of `D`'s events (run it with
/// an [`InMemoryRunner`](crate::InMemoryRunner) or on a pipeline) that keeps
/// each document as JSON, as a database does, and answers
/// [`DocumentQueries`].
pub struct InMemoryDocuments<D> {
    name: String,
    documents: Mutex<BTreeMap<String, StoredDocument>>,
    _document: PhantomData<fn() -> D>,
}

impl<D: Document> InMemoryDocuments<D> {
    /// An empty read model named [`D::NAME`](Document::NAME).
    pub fn new() -> Self {
        Self::named(D::NAME.to_owned())
    }

    /// Version `version` of the read model, named `<NAME>_v<version>`: a
    /// new shape built beside the old one (blue/green).
    pub fn version(version: u32) -> Self {
        Self::named(format!("{}_v{version}", D::NAME))
    }

    fn named(name: String) -> Self {
        Self {
            name,
            documents: Mutex::new(BTreeMap::new()),
            _document: PhantomData,
        }
    }

    // Writes replace whole entries after every check passed, so a poisoned
    // lock still guards a consistent map.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, StoredDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many documents there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every document, by id.
    ///
    /// # Errors
    ///
    /// [`DocumentError::Decode`] for a document that does not read as `D`.
    pub fn all(&self) -> Result<Vec<Versioned<D>>, DocumentError> {
        let stored: Vec<StoredDocument> = self.lock().values().cloned().collect();
        stored
            .into_iter()
            .map(|doc| doc.decode(&self.name))
            .collect()
    }
}

impl<D: Document> Default for InMemoryDocuments<D> {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl<D: Document> Projector for InMemoryDocuments<D> {
    type Event = D::Event;

    crate::__document_projector_basics!(D);

    async fn project(&self, event: &EventEnvelope<D::Event>, _: &mut ()) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), &mut ())
            .await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<D::Event>],
        _: &mut (),
    ) -> Result<(), BoxError> {
        let batch = DocumentBatch::<D>::new(events);
        let ids = batch.ids();
        // One lock for the whole batch: two batches applied at once (from
        // two tasks) would otherwise lose each other's changes.
        let mut documents = self.lock();
        let stored: Vec<StoredDocument> = ids
            .iter()
            .filter_map(|id| documents.get(id).cloned())
            .collect();
        let writes = batch.apply(&self.name, stored)?;
        for id in writes.deleted {
            documents.remove(&id);
        }
        for doc in writes.saved.into_iter().chain(writes.created) {
            documents.insert(doc.id.clone(), doc);
        }
        Ok(())
    }

    async fn reset(&self, _: &mut ()) -> Result<(), BoxError> {
        self.lock().clear();
        Ok(())
    }
}

#[async_trait]
impl<D: Document> DocumentQueries<D> for InMemoryDocuments<D> {
    async fn load(&self, id: &str) -> Result<Option<Versioned<D>>, StoreError> {
        let stored = self.lock().get(id).cloned();
        Ok(stored.map(|doc| doc.decode(&self.name)).transpose()?)
    }

    async fn load_many(&self, ids: &[&str]) -> Result<Vec<Versioned<D>>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let stored: Vec<StoredDocument> = {
            let documents = self.lock();
            ids.iter()
                .filter(|id| seen.insert(**id))
                .filter_map(|id| documents.get(*id).cloned())
                .collect()
        };
        Ok(stored
            .into_iter()
            .map(|doc| doc.decode(&self.name))
            .collect::<Result<_, _>>()?)
    }

    async fn matching_page(
        &self,
        pattern: &Value,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned<D>>, StoreError> {
        super::object_pattern(&self.name, pattern)?;
        let stored: Vec<StoredDocument> = {
            let documents = self.lock();
            let from = match after {
                Some(after) => Bound::Excluded(after.to_owned()),
                None => Bound::Unbounded,
            };
            documents
                .range((from, Bound::Unbounded))
                .map(|(_, doc)| doc.clone())
                .collect()
        };
        let mut found = Vec::new();
        for doc in stored {
            if found.len() >= limit {
                break;
            }
            let body: Value =
                serde_json::from_str(&doc.body).map_err(|source| DocumentError::Decode {
                    read_model: self.name.clone(),
                    id: doc.id.clone(),
                    source,
                })?;
            if super::contains(&body, pattern) {
                found.push(doc.decode(&self.name)?);
            }
        }
        Ok(found)
    }
}
