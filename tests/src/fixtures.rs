//! Small helpers the scenarios share.

use cqrskit::{Metadata, NewEvent, StreamId};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A stream of the test aggregate type `thing` with id `id`.
pub fn stream(id: &str) -> StreamId {
    StreamId::new("thing", id)
}

/// A new event of type `event_type` with JSON payload `payload` and a fresh id.
///
/// # Panics
///
/// When `payload` is not valid JSON (a bug in the test).
pub fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        event_version: 1,
        payload: json(payload),
        metadata: Metadata::new(),
    }
}

/// `n` events of type `Ticked` numbered `{"n": 0}`, `{"n": 1}`, ...
pub fn ticks(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Ticked", &format!(r#"{{"n":{i}}}"#)))
        .collect()
}

/// Raw JSON.
///
/// # Panics
///
/// When `text` is not valid JSON (a bug in the test).
pub fn json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("test JSON is valid")
}
