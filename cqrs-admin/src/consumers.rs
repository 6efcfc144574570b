//! Message consumers: what each processed, and the messages each gave up
//! on, with their history; replays asked of the running consumer and
//! followed until done.

use std::time::Duration;

use cqrskit::postgres::admin::{Admin, ConsumerDeadLetter, ConsumerInfo};
use serde_json::{Value, json};

use crate::Wait;
use crate::failure::Failure;
use crate::output::{self, cell};

/// How often a requested replay is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn info_json(info: &ConsumerInfo) -> Value {
    json!({
        "consumer": info.consumer,
        "processed": info.processed,
        "last_processed_at": info.last_processed_at,
        "open_dead_letters": info.open_dead_letters,
        "closed_dead_letters": info.closed_dead_letters,
        "replays_requested": info.replays_requested,
    })
}

/// Every consumer.
pub(crate) async fn list(admin: &Admin, as_json: bool) -> Result<(), Failure> {
    let infos = admin.consumers().await?;
    output::listing(
        &infos,
        as_json,
        &[
            "CONSUMER",
            "PROCESSED",
            "LAST PROCESSED",
            "DEAD LETTERS",
            "CLOSED",
            "REPLAYS ASKED",
        ],
        info_json,
        |info| {
            vec![
                info.consumer.clone(),
                info.processed.to_string(),
                cell(info.last_processed_at.map(|at| at.to_rfc3339())),
                info.open_dead_letters.to_string(),
                info.closed_dead_letters.to_string(),
                info.replays_requested.to_string(),
            ]
        },
    );
    Ok(())
}

fn letter_json(letter: &ConsumerDeadLetter, with_message: bool) -> Value {
    let mut value = json!({
        "consumer": letter.consumer,
        "source": letter.message.source,
        "message_id": letter.message.message_id,
        "subject": letter.message.subject,
        "status": letter.status(),
        "reason": letter.message.reason,
        "deliveries": letter.message.deliveries,
        "parked_at": letter.parked_at,
        "publish_error": letter.message.publish_error,
        "resolved_at": letter.resolved_at,
        "replays": letter.replays,
        "replay_error": letter.replay_error,
        "replay_requested_at": letter.replay_requested_at,
    });
    if with_message {
        let headers: Vec<Value> = letter
            .message
            .headers
            .iter()
            .map(|(name, value)| json!([name, value]))
            .collect();
        value["headers"] = Value::Array(headers);
        value["body"] = match serde_json::from_slice::<Value>(&letter.message.body) {
            Ok(body) => body,
            Err(_) => Value::String(String::from_utf8_lossy(&letter.message.body).into_owned()),
        };
    }
    value
}

/// `consumer`'s dead letters.
pub(crate) async fn dead_letters(
    admin: &Admin,
    as_json: bool,
    consumer: &str,
    all: bool,
) -> Result<(), Failure> {
    let letters = admin.consumer_dead_letters(consumer, all).await?;
    output::listing(
        &letters,
        as_json,
        &[
            "SOURCE",
            "ID",
            "STATUS",
            "SUBJECT",
            "DELIVERIES",
            "REPLAYS",
            "PARKED AT",
            "REASON",
        ],
        |letter| letter_json(letter, false),
        |letter| {
            vec![
                letter.message.source.clone(),
                letter.message.message_id.clone(),
                letter.status().to_owned(),
                letter.message.subject.clone(),
                letter.message.deliveries.to_string(),
                letter.replays.to_string(),
                letter.parked_at.to_rfc3339(),
                letter
                    .replay_error
                    .clone()
                    .unwrap_or_else(|| letter.message.reason.clone()),
            ]
        },
    );
    Ok(())
}

/// One dead letter with its message.
pub(crate) async fn dead_letter(
    admin: &Admin,
    as_json: bool,
    consumer: &str,
    source: &str,
    id: &str,
) -> Result<(), Failure> {
    let letter = admin.consumer_dead_letter(consumer, source, id).await?;
    let value = letter_json(&letter, true);
    if as_json {
        output::json(&value);
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    Ok(())
}

/// Closes a dead letter as skipped.
pub(crate) async fn skip(
    admin: &Admin,
    as_json: bool,
    consumer: &str,
    source: &str,
    id: &str,
) -> Result<(), Failure> {
    let letter = admin
        .skip_consumer_dead_letter(consumer, source, id)
        .await?;
    if as_json {
        output::json(&letter_json(&letter, false));
    } else {
        println!("dead letter {id} of {source} is skipped: {consumer} never handles it");
    }
    Ok(())
}

/// Asks the running consumer to replay a dead letter and waits for it.
pub(crate) async fn replay(
    admin: &Admin,
    as_json: bool,
    consumer: &str,
    source: &str,
    id: &str,
    wait: Wait,
) -> Result<(), Failure> {
    admin.request_consumer_replay(consumer, source, id).await?;
    if wait.no_wait {
        output::done(
            as_json,
            &format!("replay of dead letter {id} asked of {consumer}"),
        );
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
    loop {
        let letter = admin.consumer_dead_letter(consumer, source, id).await?;
        if letter.resolved_at.is_some() {
            output::done(
                as_json,
                &format!("dead letter {id} of {source} is {}", letter.status()),
            );
            return Ok(());
        }
        if letter.replay_requested_at.is_none() {
            let error = letter.replay_error.unwrap_or_default();
            return Err(Failure::Failed(format!(
                "{consumer} replayed dead letter {id} and it failed again: {error}; it stays open"
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::TimedOut(format!(
                "{consumer} did not replay dead letter {id} within {} s (is it running?); the request stays recorded",
                wait.timeout
            )));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
