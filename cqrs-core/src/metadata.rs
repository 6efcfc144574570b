//! Metadata carried with every event: who caused it and in which business
//! transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventEnvelope;

/// Metadata stored with each event.
///
/// The *correlation id* is shared by every event and command of one business
/// transaction (one HTTP request, one saga run); the *causation id* is the id
/// of the message (event or command) that directly caused this one. Together
/// they let you follow a causation chain through the log. Free-form entries
/// hold anything else (the acting user, a tenant, a trace id).
///
/// Pass it in with a command through
/// [`CommandPipeline::execute_with`](crate::CommandPipeline::execute_with); the
/// pipeline copies it to every event the command produces, filling in a fresh
/// correlation id when none was given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The business transaction this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Free-form key/value entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entries: BTreeMap<String, String>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata for a message caused by `event`: same correlation id, and the
    /// event's id as causation id. This is what a process manager passes to the
    /// commands it sends.
    pub fn caused_by<E>(event: &EventEnvelope<E>) -> Self {
        Self {
            correlation_id: event.metadata.correlation_id,
            causation_id: Some(event.event_id),
            entries: BTreeMap::new(),
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Adds a free-form entry, replacing any entry with the same key.
    pub fn with_entry(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.entries.insert(key.into(), value.into());
        self
    }

    /// The value of a free-form entry.
    pub fn entry(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }
}
