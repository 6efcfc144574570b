//! One batch of events applied to the documents it touches, in memory: what
//! every store's document projector does between loading the documents and
//! writing them back.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::{Change, Document, DocumentError, Versioned};
use crate::EventEnvelope;

/// A document as a store keeps it: its id, how many events changed it, and
/// its JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDocument {
    /// The document's id.
    pub id: String,
    /// How many events changed it since it was created.
    pub revision: u64,
    /// Its JSON text.
    pub body: String,
}

impl StoredDocument {
    /// Reads the document back as `D`.
    ///
    /// # Errors
    ///
    /// [`DocumentError::Decode`] when the text does not deserialize as `D`.
    pub fn decode<D: Document>(self, read_model: &str) -> Result<Versioned<D>, DocumentError> {
        match serde_json::from_str(&self.body) {
            Ok(document) => Ok(Versioned {
                id: self.id,
                revision: self.revision,
                document,
            }),
            Err(source) => Err(DocumentError::Decode {
                read_model: read_model.to_owned(),
                id: self.id,
                source,
            }),
        }
    }
}

/// What a batch leaves to write: the documents it changed (their final
/// state), those it created, and those it removed.
#[derive(Debug, Default)]
pub struct DocumentWrites {
    /// Changed documents that existed before the batch, in the order they
    /// were first touched.
    pub saved: Vec<StoredDocument>,
    /// Documents that did not exist before the batch. A store that lets
    /// two writers change one read model at once (inline projections,
    /// partitions) must find one created meanwhile by another writer and
    /// fail the batch rather than overwrite it.
    pub created: Vec<StoredDocument>,
    /// Ids of removed documents that existed before the batch.
    pub deleted: Vec<String>,
}

/// The events of one batch, with the documents each touches.
pub struct DocumentBatch<'a, D: Document> {
    events: &'a [EventEnvelope<D::Event>],
    /// `(event index, document id)`, in the order the changes happen.
    touches: Vec<(usize, String)>,
}

impl<'a, D: Document> DocumentBatch<'a, D> {
    /// The batch of `events`, in log order.
    pub fn new(events: &'a [EventEnvelope<D::Event>]) -> Self {
        let mut touches = Vec::new();
        let mut ids = Vec::new();
        for (index, event) in events.iter().enumerate() {
            D::ids(event, &mut ids);
            touches.extend(ids.drain(..).map(|id| (index, id)));
        }
        Self { events, touches }
    }

    /// The ids of every document the batch touches, each once: those to
    /// load before [`apply`](Self::apply).
    pub fn ids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.touches
            .iter()
            .filter(|(_, id)| seen.insert(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Applies the events to the documents: `stored` are those of
    /// [`ids`](Self::ids) that exist (the others start as
    /// `Default::default()`). Returns what to write.
    ///
    /// # Errors
    ///
    /// [`DocumentError::Decode`] for a stored document that does not read
    /// as `D`, [`DocumentError::Apply`] for a method that failed,
    /// [`DocumentError::Encode`] for a result that cannot be stored. Nothing
    /// is to be written then.
    pub fn apply(
        &self,
        read_model: &str,
        stored: impl IntoIterator<Item = StoredDocument>,
    ) -> Result<DocumentWrites, DocumentError> {
        let mut existed = HashMap::new();
        let mut current: HashMap<&str, Slot<D>> = HashMap::new();
        let mut by_id: HashMap<String, StoredDocument> = stored
            .into_iter()
            .map(|doc| (doc.id.clone(), doc))
            .collect();
        let mut order: Vec<&str> = Vec::new();
        for (index, id) in &self.touches {
            let slot = match current.entry(id.as_str()) {
                Entry::Occupied(slot) => slot.into_mut(),
                Entry::Vacant(vacant) => {
                    check_id(read_model, id)?;
                    order.push(id.as_str());
                    let slot = match by_id.remove(id.as_str()) {
                        Some(doc) => {
                            existed.insert(id.as_str(), ());
                            let loaded = doc.decode::<D>(read_model)?;
                            Slot::present(loaded.document, loaded.revision)
                        }
                        None => Slot::absent(),
                    };
                    vacant.insert(slot)
                }
            };
            let event = &self.events[*index];
            let mut document = slot.document.take().unwrap_or_default();
            let change = document
                .apply(id, event)
                .map_err(|source| DocumentError::Apply {
                    read_model: read_model.to_owned(),
                    id: id.clone(),
                    source,
                })?;
            match change {
                Change::Updated => {
                    slot.revision = if slot.alive { slot.revision + 1 } else { 1 };
                    slot.alive = true;
                    slot.changed = true;
                    slot.document = Some(document);
                }
                Change::Deleted => {
                    slot.alive = false;
                    slot.changed = true;
                    slot.revision = 0;
                }
                Change::Unchanged => {
                    slot.document = slot.alive.then_some(document);
                }
            }
        }
        let mut writes = DocumentWrites::default();
        for id in order {
            let slot = current.remove(id).expect("every touched id has a slot");
            if !slot.changed {
                continue;
            }
            match slot.document.filter(|_| slot.alive) {
                Some(document) => {
                    let stored = StoredDocument {
                        id: id.to_owned(),
                        revision: slot.revision,
                        body: encode(read_model, id, &document)?,
                    };
                    if existed.contains_key(id) {
                        writes.saved.push(stored);
                    } else {
                        writes.created.push(stored);
                    }
                }
                None if existed.contains_key(id) => writes.deleted.push(id.to_owned()),
                None => {}
            }
        }
        Ok(writes)
    }
}

/// A document while the batch changes it.
struct Slot<D> {
    /// Its state, when it exists (taken while an event applies).
    document: Option<D>,
    alive: bool,
    revision: u64,
    changed: bool,
}

impl<D> Slot<D> {
    fn present(document: D, revision: u64) -> Self {
        Self {
            document: Some(document),
            alive: true,
            revision,
            changed: false,
        }
    }

    fn absent() -> Self {
        Self {
            document: None,
            alive: false,
            revision: 0,
            changed: false,
        }
    }
}

/// The longest document id or window key, in bytes: the longest aggregate
/// id, and well within what a PostgreSQL index entry holds.
pub const MAX_ID_BYTES: usize = crate::limits::MAX_AGGREGATE_ID_BYTES;

/// Refuses an id (or a window's key) that a store could not keep: one with
/// a NUL character (PostgreSQL's text refuses it), or longer than
/// [`MAX_ID_BYTES`].
pub(crate) fn check_id(read_model: &str, id: &str) -> Result<(), DocumentError> {
    let reason = if id.contains('\0') {
        "its id holds a NUL character, which PostgreSQL cannot store"
    } else if id.len() > MAX_ID_BYTES {
        "its id is longer than 1024 bytes"
    } else {
        return Ok(());
    };
    Err(DocumentError::Encode {
        read_model: read_model.to_owned(),
        id: id.chars().take(64).collect(),
        reason: reason.to_owned(),
    })
}

/// The document's JSON text, checked as events' payloads are, so that what
/// is stored reads back in every store.
pub(crate) fn encode<D: Document>(
    read_model: &str,
    id: &str,
    document: &D,
) -> Result<String, DocumentError> {
    let refuse = |reason: String| DocumentError::Encode {
        read_model: read_model.to_owned(),
        id: id.to_owned(),
        reason,
    };
    crate::codec::check_faithful(document).map_err(refuse)?;
    let body = serde_json::to_string(document).map_err(|error| refuse(error.to_string()))?;
    crate::limits::check_json("document", &body).map_err(refuse)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{DocumentBatch, StoredDocument};
    use crate::document::{Change, Document, DocumentError, Identity};
    use crate::{BoxError, DomainEvent, EventEnvelope, Metadata, Position, StreamId};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Step {
        /// Adds to the documents named.
        Add(Vec<String>, i64),
        /// Removes the documents named.
        Remove(Vec<String>),
        /// Touches the documents named without changing them.
        Look(Vec<String>),
    }

    impl DomainEvent for Step {
        const EVENT_TYPES: &'static [&'static str] = &["Add", "Remove", "Look"];

        fn event_type(&self) -> &'static str {
            match self {
                Step::Add(..) => "Add",
                Step::Remove(_) => "Remove",
                Step::Look(_) => "Look",
            }
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Sum {
        total: i64,
    }

    impl Document for Sum {
        type Event = Step;
        const NAME: &'static str = "sums";
        const EVENT_TYPES: &'static [&'static str] = Step::EVENT_TYPES;
        const IDENTITY: Identity = Identity::Event;

        fn ids(event: &EventEnvelope<Step>, ids: &mut Vec<String>) {
            let (Step::Add(names, _) | Step::Remove(names) | Step::Look(names)) = &event.payload;
            ids.extend(names.iter().cloned());
        }

        fn apply(&mut self, _: &str, event: &EventEnvelope<Step>) -> Result<Change, BoxError> {
            Ok(match &event.payload {
                Step::Add(_, n) if *n < 0 => return Err("negative".into()),
                Step::Add(_, n) => {
                    self.total += n;
                    Change::Updated
                }
                Step::Remove(_) => Change::Deleted,
                Step::Look(_) => Change::Unchanged,
            })
        }
    }

    fn envelope(n: u64, payload: Step) -> EventEnvelope<Step> {
        EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new("steps", "s"),
            version: n,
            position: Position::new(1, n),
            event_type: payload.event_type().to_owned(),
            event_version: 1,
            payload,
            metadata: Metadata::default(),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn stored(id: &str, revision: u64, total: i64) -> StoredDocument {
        StoredDocument {
            id: id.to_owned(),
            revision,
            body: format!("{{\"total\":{total}}}"),
        }
    }

    #[test]
    fn a_batch_writes_each_documents_last_state_once_with_its_revision() {
        let events = [
            envelope(1, Step::Add(ids(&["a", "b"]), 2)),
            envelope(2, Step::Look(ids(&["c", "a"]))),
            envelope(3, Step::Add(ids(&["a"]), 3)),
            envelope(4, Step::Remove(ids(&["b", "d", "e"]))),
            envelope(5, Step::Remove(ids(&["f"]))),
            envelope(6, Step::Add(ids(&["f"]), 1)),
        ];
        let batch = DocumentBatch::<Sum>::new(&events);
        assert_eq!(batch.ids(), ids(&["a", "b", "c", "d", "e", "f"]));
        let writes = batch
            .apply(
                "sums",
                [stored("a", 4, 10), stored("d", 1, 1), stored("f", 7, 50)],
            )
            .expect("applies");
        // a: 10 + 2 + 3 at revision 6; b: created and removed in the batch,
        // so nothing; c: only looked at, not created; d: removed; e: never
        // existed; f: removed and created again, from nothing.
        assert_eq!(
            writes.saved,
            [stored("a", 6, 15), stored("f", 1, 1)],
            "{writes:?}"
        );
        assert_eq!(writes.deleted, ids(&["d"]));
    }

    #[test]
    fn a_failure_names_the_document_and_a_corrupt_one_is_refused() {
        let events = [envelope(1, Step::Add(ids(&["a", "b"]), -1))];
        let error = DocumentBatch::<Sum>::new(&events)
            .apply("sums", [])
            .expect_err("negative");
        assert!(
            matches!(&error, DocumentError::Apply { id, read_model, .. } if id == "a" && read_model == "sums"),
            "{error}"
        );
        let events = [envelope(1, Step::Add(ids(&["a"]), 1))];
        let corrupt = StoredDocument {
            id: "a".into(),
            revision: 1,
            body: "{\"total\":\"many\"}".into(),
        };
        let error = DocumentBatch::<Sum>::new(&events)
            .apply("sums", [corrupt])
            .expect_err("corrupt");
        assert!(
            matches!(&error, DocumentError::Decode { id, .. } if id == "a"),
            "{error}"
        );
        // Ids no store could keep are refused before anything is written.
        for bad in ["a\0b".to_owned(), "x".repeat(1025)] {
            let events = [envelope(1, Step::Add(vec![bad.clone()], 1))];
            let error = DocumentBatch::<Sum>::new(&events)
                .apply("sums", [])
                .expect_err("refused");
            assert!(matches!(&error, DocumentError::Encode { .. }), "{error}");
        }
    }
}
