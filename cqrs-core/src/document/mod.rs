//! Document read models: a serde type per read model, one document per id,
//! changed by events without hand-written SQL.
//!
//! A [`Document`] says which documents an event touches (its own stream's, or
//! ids carried by the event: one event may touch several) and how each event
//! changes a document. The `#[document]` macro writes the impl from
//! `#[apply]`, `#[delete]` and `#[id]` methods. A store runs it as a
//! projector that loads the touched documents of a whole batch at once,
//! applies the events in memory, and writes the changed ones back in the
//! runner's transaction: [`InMemoryDocuments`] here, `PgDocuments` in the
//! PostgreSQL store. Both answer [`DocumentQueries`], so query handlers are
//! written once for either.
//!
//! ```
//! use cqrskit::document::{Document, DocumentQueries, InMemoryDocuments};
//! use cqrskit::{DomainEvent, EventEnvelope, InMemoryRunner, document};
//! # use cqrskit::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId};
//! use serde::{Deserialize, Serialize};
//! # use std::sync::Arc;
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Opened { owner: String }
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//! #[derive(Clone, Debug, Serialize, Deserialize, DomainEvent)]
//! enum AccountEvent { Opened(Opened), Deposited(Deposited) }
//!
//! /// One account as a screen shows it: keyed by the account's stream.
//! #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
//! struct AccountView { owner: String, balance: u64, deposits: u32 }
//!
//! #[document(event = AccountEvent, name = "account_views")]
//! impl AccountView {
//!     #[apply]
//!     fn opened(&mut self, event: &Opened) {
//!         self.owner = event.owner.clone();
//!     }
//!
//!     #[apply]
//!     fn deposited(&mut self, event: &Deposited) {
//!         self.balance += event.amount;
//!         self.deposits += 1;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = Arc::new(InMemoryEventStore::new());
//! # let stream = StreamId::new("account", "a-1");
//! # let events = [AccountEvent::Opened(Opened { owner: "ada".into() }), AccountEvent::Deposited(Deposited { amount: 30 })];
//! # let events: Vec<NewEvent> = events.iter().map(|e| NewEvent::from_event(e, Default::default())).collect::<Result<_, _>>()?;
//! # store.append(&stream, ExpectedVersion::NoStream, events).await?;
//! let views = Arc::new(InMemoryDocuments::<AccountView>::new());
//! let runner = InMemoryRunner::new(store.clone(), views.clone());
//! runner.poll().await?;
//! let view = views.load("a-1").await?.expect("projected");
//! assert_eq!(view.document, AccountView { owner: "ada".into(), balance: 30, deposits: 1 });
//! assert_eq!(view.revision, 2);
//! # Ok(())
//! # }
//! ```

mod batch;
mod error;
mod ids;
mod matching;
mod memory;
mod queries;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{BoxError, DomainEvent, EventEnvelope};

pub use batch::{DocumentBatch, DocumentWrites, MAX_ID_BYTES, StoredDocument};
pub(crate) use batch::{check_id, encode as batch_encode};
pub use error::DocumentError;
pub use ids::DocumentIds;
pub use matching::contains;
pub use memory::InMemoryDocuments;
pub use queries::{DocumentQueries, Versioned, object_pattern};

/// A read model kept as one serde document per id.
///
/// Written by `#[document(event = E, name = "...")]` on the type's impl
/// block; implement it by hand only for what the macro cannot say. A
/// document that an event touches for the first time starts as
/// [`Default::default`].
pub trait Document: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// The events it is built from (an event union for several aggregates).
    type Event: DomainEvent;

    /// The read model's name: its projection's name, and its table's.
    /// Lower-case letters, digits and underscores (a table name).
    const NAME: &'static str;

    /// The stored event types it handles; the store delivers only these.
    const EVENT_TYPES: &'static [&'static str];

    /// Where the ids of the documents an event touches come from.
    const IDENTITY: Identity;

    /// Whether [`apply`](Self::apply) or [`ids`](Self::ids) read the
    /// envelopes' metadata; a store leaves it out of the read when not.
    /// `#[document]` answers `false` when no method takes the envelope.
    const READS_METADATA: bool = true;

    /// Adds to `ids` the id of every document `event` touches, in the order
    /// they are changed. An event of a type the document does not handle
    /// touches none.
    fn ids(event: &EventEnvelope<Self::Event>, ids: &mut Vec<String>);

    /// Changes the document `id` by `event`.
    ///
    /// # Errors
    ///
    /// The document's own error: the runner reports it with the event and
    /// retries, parks or stops as its policy says; nothing of the batch is
    /// written.
    fn apply(&mut self, id: &str, event: &EventEnvelope<Self::Event>) -> Result<Change, BoxError>;

    /// Folds `other` into this state: two session windows that one event
    /// joins become one (`#[merge]` with the macro). Only session windows
    /// call it, and only when an event falls between two sessions.
    ///
    /// # Errors
    ///
    /// The method's own; the default refuses, naming the missing method, so
    /// the event that needed it fails (and is retried, parked or stops the
    /// projection) rather than losing a session.
    fn merge(&mut self, other: Self) -> Result<(), BoxError> {
        let _ = other;
        Err(format!(
            "read model `{}` has no #[merge] method: its session windows cannot be joined",
            Self::NAME
        )
        .into())
    }
}

/// Where a document type takes the ids of the documents an event touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Every event touches its own stream's document (the aggregate id): a
    /// stream's events change one document, in stream order, so the read
    /// model can run in partitions.
    Stream,
    /// Some events name their documents (a customer's id in an order's
    /// event): documents gather events of many streams, which partitions
    /// would apply in separate transactions, racing on one row. Such a read
    /// model runs unpartitioned; a partitioned runner refuses it.
    Event,
}

/// What one event did to one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The document changed: it is written back.
    Updated,
    /// The document is removed.
    Deleted,
    /// Nothing changed (an `#[apply]` method that answered so, a
    /// `#[delete]` method that answered `false`, or an event the document
    /// does not handle): nothing is written, and a document that did not
    /// exist is not created. Answer it only when the method changed
    /// nothing.
    Unchanged,
}

/// What an `#[apply]` method may return: nothing (the document changed),
/// a [`Change`] (`Change::Unchanged` when the event does not concern this
/// document: an event for a document that does not exist then creates
/// none), or a `Result` of either, whose error fails the event.
pub trait IntoChange {
    /// The change, or the method's error.
    ///
    /// # Errors
    ///
    /// The method's error.
    fn into_change(self) -> Result<Change, BoxError>;
}

impl IntoChange for () {
    fn into_change(self) -> Result<Change, BoxError> {
        Ok(Change::Updated)
    }
}

impl IntoChange for Change {
    fn into_change(self) -> Result<Change, BoxError> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> IntoChange for Result<(), E> {
    fn into_change(self) -> Result<Change, BoxError> {
        self.map(|()| Change::Updated).map_err(Into::into)
    }
}

impl<E: Into<BoxError>> IntoChange for Result<Change, E> {
    fn into_change(self) -> Result<Change, BoxError> {
        self.map_err(Into::into)
    }
}

/// Why the read model `D` refuses to run in partitions, if it does: what a
/// document or window projector's
/// [`Projector::partition_refusal`](crate::Projector::partition_refusal)
/// answers. Partitions split the log by stream (its aggregate type and id),
/// so a document is safe in them only when every event that changes it is
/// of one stream: keyed by its stream's id, with events of one aggregate's
/// enum.
pub const fn partition_refusal<D: Document>() -> Option<&'static str> {
    match D::IDENTITY {
        Identity::Event => Some(
            "its documents gather events of several streams (an `#[id]` method names them), and \
             partitions would change one document in separate transactions: run it unpartitioned",
        ),
        Identity::Stream if <D::Event as DomainEvent>::ENUMS > 1 => Some(
            "its documents are keyed by aggregate id over the events of several aggregates (an \
             event union), whose streams of one id fall in different partitions: run it \
             unpartitioned",
        ),
        Identity::Stream => None,
    }
}

/// The projector methods every store's document or window read model
/// answers alike from its document type (`$document`) and its `name`
/// field: its name, event types, metadata and partitioning.
#[doc(hidden)]
#[macro_export]
macro_rules! __document_projector_basics {
    ($document:ty) => {
        fn name(&self) -> &str {
            &self.name
        }

        fn event_types(&self) -> &'static [&'static str] {
            <$document as $crate::document::Document>::EVENT_TYPES
        }

        fn reads_metadata(&self) -> bool {
            <$document as $crate::document::Document>::READS_METADATA
        }

        fn partition_refusal(&self) -> ::core::option::Option<&'static str> {
            $crate::document::partition_refusal::<$document>()
        }
    };
}
