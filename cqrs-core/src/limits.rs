//! What a store accepts: the checks every store runs on an append before
//! writing anything, so that the in-memory store and PostgreSQL refuse the
//! same input with the same error, and whatever a store accepts it can read
//! back.
//!
//! The limits come from what PostgreSQL can index and store (an index entry
//! holds at most about 2.7 kB; `text` and `jsonb` refuse the NUL character)
//! and from what `serde_json` reads back (at most [`MAX_DEPTH`] levels of
//! nesting).

use uuid::Uuid;

use crate::{NewEvent, StoreError, StreamId};

pub use crate::codec::MAX_DEPTH;

/// The longest aggregate type and event type name, in bytes of UTF-8.
pub const MAX_TYPE_NAME_BYTES: usize = 255;

/// The longest aggregate id, in bytes of UTF-8.
pub const MAX_AGGREGATE_ID_BYTES: usize = 1024;

/// The largest payload, and the largest serialized metadata, of one event,
/// in bytes of JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Checks an append before anything is written.
///
/// # Errors
///
/// [`StoreError::InvalidEvent`] naming the stream, the event (when one is at
/// fault) and what is wrong: a name or id with a NUL character or past its
/// length limit, a schema version of 0 or past `i32::MAX`, a payload or
/// metadata holding a NUL character (`\u0000`), nested deeper than
/// [`MAX_DEPTH`] or larger than [`MAX_PAYLOAD_BYTES`].
pub fn check_append(stream: &StreamId, events: &[NewEvent]) -> Result<(), StoreError> {
    let refuse = |event_id: Option<Uuid>, reason: String| StoreError::InvalidEvent {
        stream: stream.clone(),
        event_id,
        reason,
    };
    check_text(
        "aggregate type",
        &stream.aggregate_type,
        MAX_TYPE_NAME_BYTES,
    )
    .map_err(|reason| refuse(None, reason))?;
    check_text("aggregate id", &stream.aggregate_id, MAX_AGGREGATE_ID_BYTES)
        .map_err(|reason| refuse(None, reason))?;
    for event in events {
        check_event(event).map_err(|reason| refuse(Some(event.event_id), reason))?;
    }
    Ok(())
}

fn check_event(event: &NewEvent) -> Result<(), String> {
    if event.event_type.is_empty() {
        return Err("the event type is empty".to_owned());
    }
    check_text("event type", &event.event_type, MAX_TYPE_NAME_BYTES)?;
    if event.event_version == 0 || i32::try_from(event.event_version).is_err() {
        return Err(format!(
            "schema version {} of `{}` is outside 1..={}",
            event.event_version,
            event.event_type,
            i32::MAX
        ));
    }
    check_json("payload", event.payload.get())?;
    check_metadata(&event.metadata)
}

/// Metadata is ids and flat string entries: checked field by field rather
/// than serialized once more on every append (the store serializes it
/// anyway).
fn check_metadata(metadata: &crate::Metadata) -> Result<(), String> {
    let mut bytes = 0;
    for (key, value) in &metadata.entries {
        if key.contains('\0') || value.contains('\0') {
            return Err(format!(
                "the metadata contains a NUL character (entry `{}`), which PostgreSQL cannot store",
                key.escape_default()
            ));
        }
        bytes += key.len() + value.len();
    }
    if bytes > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "the metadata is {bytes} bytes long; the limit is {MAX_PAYLOAD_BYTES}"
        ));
    }
    Ok(())
}

fn check_text(what: &str, text: &str, max_bytes: usize) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!("the {what} contains a NUL character"));
    }
    if text.len() > max_bytes {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {max_bytes}",
            text.len()
        ));
    }
    Ok(())
}

pub(crate) fn check_json(what: &str, json: &str) -> Result<(), String> {
    if json.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {MAX_PAYLOAD_BYTES}",
            json.len()
        ));
    }
    if has_nul_escape(json) {
        return Err(format!(
            "the {what} contains a NUL character (\\u0000), which PostgreSQL cannot store"
        ));
    }
    let depth = nesting(json);
    if depth > MAX_DEPTH {
        return Err(format!(
            "the {what} is nested {depth} levels deep and would not read back; the limit is {MAX_DEPTH}"
        ));
    }
    Ok(())
}

/// How deeply arrays and objects nest in valid JSON text. Counted by hand:
/// `serde_json` checks its depth limit only where it builds values, not
/// where it skips them.
fn nesting(json: &str) -> usize {
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Whether JSON text holds the escape `\u0000` (and not an escaped backslash
/// followed by `u0000`).
fn has_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    json.match_indices("\\u0000").any(|(at, _)| {
        let backslashes = bytes[..=at]
            .iter()
            .rev()
            .take_while(|&&byte| byte == b'\\')
            .count();
        backslashes % 2 == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_nul_escape_counts() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(has_nul_escape(r#"["\\\u0000"]"#));
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"\u0001"}"#));
    }

    #[test]
    fn nesting_ignores_brackets_in_strings() {
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting(r#"{"a":[[1],{"b":"[[[\"{"}]}"#), 3);
    }
}
