//! Reading events: one stream, the global log, and the append the log
//! waits for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrskit::postgres::admin::Admin;
use cqrskit::{EventStore, LogFilter, Position, StoredEvent, StreamId};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output;

/// How many events a stream is read in.
const STREAM_BATCH: usize = 1000;

pub(crate) fn event_json(event: &StoredEvent) -> Value {
    let payload: Value = serde_json::from_str(event.payload.get()).unwrap_or(Value::Null);
    json!({
        "position": event.position.to_string(),
        "stream": event.stream.to_string(),
        "version": event.version,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "recorded_at": event.recorded_at,
        "metadata": serde_json::to_value(&event.metadata).unwrap_or(Value::Null),
        "payload": payload,
    })
}

/// The events of `aggregate_type/id`, up to a version or a time.
pub(crate) async fn stream(
    admin: &Admin,
    as_json: bool,
    aggregate_type: &str,
    id: &str,
    at_version: Option<u64>,
    at_time: Option<DateTime<Utc>>,
) -> Result<(), Failure> {
    let stream = StreamId::new(aggregate_type, id);
    let mut events = Vec::new();
    'read: loop {
        let from = events
            .last()
            .map_or(1, |event: &StoredEvent| event.version + 1);
        let batch = admin
            .store()
            .read_stream(&stream, from, STREAM_BATCH)
            .await
            .map_err(Failure::from_display)?;
        let full = batch.len() == STREAM_BATCH;
        for event in batch {
            // Up to the first event past the version or time asked for.
            if at_version.is_some_and(|version| event.version > version)
                || at_time.is_some_and(|time| event.recorded_at > time)
            {
                break 'read;
            }
            events.push(event);
        }
        if !full {
            break;
        }
    }
    if events.is_empty() && at_version.is_none() && at_time.is_none() {
        return Err(Failure::NotFound(format!("stream {stream} has no events")));
    }
    output::listing(
        &events,
        as_json,
        &["VERSION", "TYPE", "RECORDED AT", "METADATA", "PAYLOAD"],
        event_json,
        |event| {
            vec![
                event.version.to_string(),
                event.event_type.clone(),
                event.recorded_at.to_rfc3339(),
                serde_json::to_string(&event.metadata).unwrap_or_default(),
                event.payload.get().to_owned(),
            ]
        },
    );
    Ok(())
}

/// The global log after `from`, once or following it.
pub(crate) async fn log(
    admin: &Admin,
    as_json: bool,
    from: Option<Position>,
    types: Vec<String>,
    limit: usize,
    follow: bool,
) -> Result<(), Failure> {
    let filter = LogFilter::event_types(types);
    let mut after = from.unwrap_or(Position::START);
    let mut header = !as_json;
    loop {
        let batch = admin
            .store()
            .read_log(after, &filter, limit.max(1))
            .await
            .map_err(Failure::from_display)?;
        if let Some(last) = batch.last() {
            after = last.position;
        }
        if as_json {
            // One event per line when following, so a reader can stream it.
            if follow {
                batch
                    .iter()
                    .for_each(|event| output::json(&event_json(event)));
            } else {
                output::json(&Value::Array(batch.iter().map(event_json).collect()));
            }
        } else {
            let rows: Vec<Vec<String>> = batch
                .iter()
                .map(|event| {
                    vec![
                        event.position.to_string(),
                        event.stream.to_string(),
                        event.version.to_string(),
                        event.event_type.clone(),
                        event.recorded_at.to_rfc3339(),
                    ]
                })
                .collect();
            if header || !rows.is_empty() {
                let headers = ["POSITION", "STREAM", "VERSION", "TYPE", "RECORDED AT"];
                if header {
                    output::table(&headers, &rows);
                    header = false;
                } else {
                    output::rows(&headers, &rows);
                }
            }
        }
        if !follow {
            return Ok(());
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The oldest append in flight, or a sentence saying there is none.
pub(crate) async fn oldest_transaction(admin: &Admin, as_json: bool) -> Result<(), Failure> {
    let oldest = admin
        .store()
        .oldest_open_append()
        .await
        .map_err(Failure::from_display)?;
    match (oldest, as_json) {
        (None, true) => output::json(&Value::Null),
        (None, false) => println!("no append is in flight"),
        (Some(append), true) => output::json(&json!({
            "pid": append.pid,
            "transaction_id": append.transaction_id,
            "started_at": append.started_at,
            "state": append.state,
            "application_name": append.application_name,
            "query": append.query,
        })),
        (Some(append), false) => output::table(
            &[
                "PID",
                "TRANSACTION",
                "STARTED AT",
                "STATE",
                "APPLICATION",
                "QUERY",
            ],
            &[vec![
                append.pid.to_string(),
                append.transaction_id.to_string(),
                output::cell(append.started_at.map(|at| at.to_rfc3339())),
                output::cell(append.state),
                append.application_name,
                append.query,
            ]],
        ),
    }
    Ok(())
}
