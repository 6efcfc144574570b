//! Which events leave the service, and in what shape.

use cqrskit_core::{DomainEvent, EventEnvelope};
use serde_json::value::RawValue;

/// The public message for one domain event: what other services see of it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The CloudEvents `type`, in the publisher's public vocabulary
    /// (`com.example.order.placed.v1`): it names the published contract,
    /// not the Rust type, so internal events can change behind it.
    pub event_type: String,
    /// The data, as JSON.
    pub data: Box<RawValue>,
    /// The last token of the NATS subject; the stored event type when
    /// `None` (see [`RelayOptions`](crate::RelayOptions)).
    pub subject_token: Option<String>,
}

impl Outgoing {
    /// A message of `event_type` carrying `data` serialized as JSON.
    ///
    /// # Errors
    ///
    /// When `data` does not serialize.
    pub fn new<T: serde::Serialize>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: event_type.into(),
            data: serde_json::value::to_raw_value(data)?,
            subject_token: None,
        })
    }

    /// The same message, published under the subject token `token`.
    pub fn with_subject_token(mut self, token: impl Into<String>) -> Self {
        self.subject_token = Some(token.into());
        self
    }
}

/// Chooses which events leave the service and maps each to its public
/// shape (a published language). Events it returns `None` for stay inside;
/// the relay still moves past them.
///
/// Only the stored types named by [`event_types`](Publication::event_types)
/// are read from the log at all.
pub trait Publication: Send + Sync + 'static {
    /// The domain events it looks at.
    type Event: DomainEvent;

    /// The stored type names it needs; defaults to every type of
    /// [`Self::Event`](Publication::Event).
    fn event_types(&self) -> &'static [&'static str] {
        <Self::Event as DomainEvent>::EVENT_TYPES
    }

    /// The public message for `event`, or `None` to keep it inside.
    ///
    /// # Errors
    ///
    /// When the public shape cannot be built (a serialization failure): the
    /// relay retries, then stops at the event, as a projection does.
    fn publish(
        &self,
        event: &EventEnvelope<Self::Event>,
    ) -> Result<Option<Outgoing>, cqrskit_core::BoxError>;
}
