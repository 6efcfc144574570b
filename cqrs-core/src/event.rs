//! Events: the domain event trait and the envelope every stored event travels in.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{DecodeError, PayloadError};
use crate::{Metadata, Position, StreamId, codec};

/// A domain event: an immutable fact, stored under a stable type name.
///
/// Implement it for your event enum, one variant per kind of fact (the
/// `DomainEvent` derive of this crate writes this impl for you). The stored
/// payload is the variant's content only (see [`codec`](crate::codec)), so the
/// enum must use serde's default representation.
///
/// ```
/// use cqrskit::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum LightEvent {
///     SwitchedOn,
///     Dimmed { percent: u8 },
/// }
///
/// impl DomainEvent for LightEvent {
///     // In declaration order: the default `decode` maps a name to its variant by index.
///     const EVENT_TYPES: &'static [&'static str] = &["SwitchedOn", "Dimmed"];
///
///     fn event_type(&self) -> &'static str {
///         match self {
///             LightEvent::SwitchedOn => "SwitchedOn",
///             LightEvent::Dimmed { .. } => "Dimmed",
///         }
///     }
/// }
///
/// let payload = LightEvent::Dimmed { percent: 40 }.encode().unwrap();
/// assert_eq!(payload.get(), r#"{"percent":40}"#);
/// let back = LightEvent::decode("Dimmed", 1, payload.get()).unwrap();
/// assert_eq!(back, LightEvent::Dimmed { percent: 40 });
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stored type name of every variant, in declaration order.
    ///
    /// Names must be unique across the whole application's log, since readers
    /// of the global log select events by them.
    const EVENT_TYPES: &'static [&'static str];

    /// How many event enums this type gathers: 1 for an enum, the count of
    /// its members' for an event union (`#[derive(EventUnion)]` writes it).
    /// A read model keyed by the aggregate id of events from several enums
    /// may join streams of several aggregate types under one id, which
    /// partitions would split.
    const ENUMS: usize = 1;

    /// The stored type name of this event's variant.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event's payload (default 1). Raise it when a
    /// variant's shape changes, and upcast older payloads in [`decode`](Self::decode).
    fn event_version(&self) -> u32 {
        1
    }

    /// Serializes the event's payload.
    ///
    /// # Errors
    ///
    /// Fails when a field does not serialize (a map with non-string keys, say).
    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        codec::encode_variant(self)
    }

    /// Rebuilds an event from its stored type name, schema version and payload
    /// (JSON text).
    ///
    /// The default looks the name up in [`EVENT_TYPES`](Self::EVENT_TYPES) and
    /// decodes that variant; override it to upcast older schema versions.
    ///
    /// # Errors
    ///
    /// [`PayloadError::UnknownEventType`] for a name this enum does not have,
    /// [`PayloadError::Json`] when the payload does not match the variant.
    fn decode(event_type: &str, event_version: u32, payload: &str) -> Result<Self, PayloadError> {
        let _ = event_version;
        let index = Self::EVENT_TYPES
            .iter()
            .position(|known| *known == event_type)
            .ok_or_else(|| PayloadError::UnknownEventType {
                event_type: event_type.to_owned(),
            })?;
        let index = u32::try_from(index).map_err(|_| PayloadError::UnknownEventType {
            event_type: event_type.to_owned(),
        })?;
        Ok(codec::decode_variant(index, payload)?)
    }
}

/// An event with everything the store knows about it.
///
/// `P` is the payload: the typed event in an [`EventEnvelope<E>`], the
/// serialized JSON in a [`StoredEvent`].
#[derive(Clone, Debug, PartialEq)]
pub struct EventEnvelope<P> {
    /// The event's unique id (UUID v7 when written by the pipeline).
    pub event_id: Uuid,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Its version within the stream: 1, 2, 3, ... with no holes.
    pub version: u64,
    /// Its place in the global log.
    pub position: Position,
    /// The stored type name.
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: u32,
    /// The event itself.
    pub payload: P,
    /// Correlation, causation and free-form metadata.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// An event as stored: its payload is serialized JSON.
pub type StoredEvent = EventEnvelope<Box<RawValue>>;

impl StoredEvent {
    /// Decodes the payload into the domain event type `E`.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the stream, version and event type when the
    /// type is unknown to `E` or the payload no longer matches it.
    pub fn decode<E: DomainEvent>(self) -> Result<EventEnvelope<E>, DecodeError> {
        match E::decode(&self.event_type, self.event_version, self.payload.get()) {
            Ok(event) => Ok(self.with_payload(event)),
            Err(source) => Err(DecodeError {
                stream: self.stream,
                version: self.version,
                event_type: self.event_type,
                event_version: self.event_version,
                source: Box::new(source),
            }),
        }
    }
}

impl StoredEvent {
    /// [`decode`](Self::decode) without giving the stored event up: only the
    /// envelope's small fields are copied, not the payload.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub fn decode_ref<E: DomainEvent>(&self) -> Result<EventEnvelope<E>, DecodeError> {
        match E::decode(&self.event_type, self.event_version, self.payload.get()) {
            Ok(event) => Ok(EventEnvelope {
                event_id: self.event_id,
                stream: self.stream.clone(),
                version: self.version,
                position: self.position,
                event_type: self.event_type.clone(),
                event_version: self.event_version,
                payload: event,
                metadata: self.metadata.clone(),
                recorded_at: self.recorded_at,
            }),
            Err(source) => Err(DecodeError {
                stream: self.stream.clone(),
                version: self.version,
                event_type: self.event_type.clone(),
                event_version: self.event_version,
                source: Box::new(source),
            }),
        }
    }
}

impl<P> EventEnvelope<P> {
    /// The same envelope around another payload.
    pub fn with_payload<Q>(self, payload: Q) -> EventEnvelope<Q> {
        EventEnvelope {
            event_id: self.event_id,
            stream: self.stream,
            version: self.version,
            position: self.position,
            event_type: self.event_type,
            event_version: self.event_version,
            payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

/// An event on its way into the store: what the writer decides; the store
/// adds version, position and time.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event's unique id. Appending the same ids again, with the same
    /// content, is an idempotent success.
    pub event_id: Uuid,
    /// The stored type name.
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: u32,
    /// The serialized payload.
    pub payload: Box<RawValue>,
    /// Correlation, causation and free-form metadata.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Serializes a domain event with a fresh UUID v7 id.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`](crate::EncodeError) naming the event type when the
    /// payload does not serialize.
    pub fn from_event<E: DomainEvent>(
        event: &E,
        metadata: Metadata,
    ) -> Result<Self, crate::EncodeError> {
        let payload = event.encode().map_err(|source| crate::EncodeError {
            event_type: event.event_type().to_owned(),
            source,
        })?;
        Ok(Self {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            event_version: event.event_version(),
            payload,
            metadata,
        })
    }

    /// Whether `stored` holds exactly this event (same id, type, version,
    /// payload and metadata): the test for an idempotent re-append.
    pub fn same_as(&self, stored: &StoredEvent) -> bool {
        self.event_id == stored.event_id
            && self.event_type == stored.event_type
            && self.event_version == stored.event_version
            && self.metadata == stored.metadata
            && crate::exact_json::equal(self.payload.get(), stored.payload.get())
    }
}
