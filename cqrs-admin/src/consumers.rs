//! Message consumers: what each processed, and the messages each gave up
//! on, with their history; replays asked of the running consumer and
//! followed until done.

use std::time::Duration;

use cqrskit::nats::async_nats::{self, jetstream};
use cqrskit::nats::{ConsumerLag, consumer_lag};
use cqrskit::postgres::admin::{Admin, ConsumerDeadLetter, ConsumerInfo};
use serde_json::{Value, json};

use crate::Wait;
use crate::failure::Failure;
use crate::output::{self, cell};

/// How often a requested replay is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn info_json(info: &ConsumerInfo, lag: Option<&ConsumerLag>) -> Value {
    json!({
        "consumer": info.consumer,
        "processed": info.processed,
        "last_processed_at": info.last_processed_at,
        "open_dead_letters": info.open_dead_letters,
        "closed_dead_letters": info.closed_dead_letters,
        "replays_requested": info.replays_requested,
        "stream": lag.map(|lag| lag.stream.clone()),
        "pending_messages": lag.map(|lag| lag.pending),
        "unacknowledged_messages": lag.map(|lag| lag.unacknowledged),
    })
}

/// Each consumer's lag, when NATS is given and answers (a warning on
/// stderr otherwise: the rest of the listing stands without it).
async fn lags(infos: &[ConsumerInfo], nats_url: Option<&str>) -> Vec<Option<ConsumerLag>> {
    let none = || vec![None; infos.len()];
    let Some(url) = nats_url else {
        return none();
    };
    let client = match async_nats::connect(url).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cqrs-admin: no lag: cannot reach NATS at {url}: {error}");
            return none();
        }
    };
    let jetstream = jetstream::new(client);
    let mut lags = Vec::with_capacity(infos.len());
    for info in infos {
        match consumer_lag(&jetstream, &info.consumer).await {
            Ok(lag) => lags.push(lag),
            Err(error) => {
                eprintln!("cqrs-admin: no lag for {}: {error}", info.consumer);
                lags.push(None);
            }
        }
    }
    lags
}

/// Every consumer, with its lag when NATS is given.
pub(crate) async fn list(
    admin: &Admin,
    as_json: bool,
    nats_url: Option<&str>,
) -> Result<(), Failure> {
    let infos = admin.consumers().await?;
    let lags = lags(&infos, nats_url).await;
    let rows: Vec<(&ConsumerInfo, Option<&ConsumerLag>)> =
        infos.iter().zip(lags.iter().map(Option::as_ref)).collect();
    output::listing(
        &rows,
        as_json,
        &[
            "CONSUMER",
            "PROCESSED",
            "LAST PROCESSED",
            "PENDING",
            "UNACKED",
            "DEAD LETTERS",
            "CLOSED",
            "REPLAYS ASKED",
        ],
        |(info, lag)| info_json(info, *lag),
        |(info, lag)| {
            vec![
                info.consumer.clone(),
                info.processed.to_string(),
                cell(info.last_processed_at.map(|at| at.to_rfc3339())),
                cell(lag.map(|lag| lag.pending.to_string())),
                cell(lag.map(|lag| lag.unacknowledged.to_string())),
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
        match letter.resolution.as_deref() {
            Some("replayed") => {
                output::done(
                    as_json,
                    &format!("dead letter {id} of {source} is replayed"),
                );
                return Ok(());
            }
            Some(other) => {
                return Err(Failure::Failed(format!(
                    "dead letter {id} of {source} was closed as {other} before {consumer} replayed it"
                )));
            }
            None => {}
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
