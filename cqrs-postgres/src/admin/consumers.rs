//! An operator's view of message consumers (the NATS consumer's inbox, or
//! any broker's): what each processed, and the messages it gave up on,
//! with their history; a replay is asked of the running consumer, whose
//! handler lives in the application.

use chrono::{DateTime, Utc};
use sqlx::Row;

use cqrskit_core::inbox::ParkedMessage;

use super::Admin;
use crate::Error;
use crate::inbox::headers_from_json;

/// A consumer, as its inbox shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The consumer's name (a NATS consumer's durable name).
    pub consumer: String,
    /// Messages it processed and still remembers (the inbox is pruned).
    pub processed: u64,
    /// When it last processed one.
    pub last_processed_at: Option<DateTime<Utc>>,
    /// Its dead letters still open.
    pub open_dead_letters: u64,
    /// Its dead letters closed (replayed or skipped).
    pub closed_dead_letters: u64,
    /// Replays asked of it that it has not carried out yet.
    pub replays_requested: u64,
}

/// A message a consumer gave up on, with its history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerDeadLetter {
    /// The consumer.
    pub consumer: String,
    /// The message as kept: its identity, subject, headers, body, why it
    /// was given up on.
    pub message: ParkedMessage,
    /// When it was given up on.
    pub parked_at: DateTime<Utc>,
    /// When it was closed.
    pub resolved_at: Option<DateTime<Utc>>,
    /// How: `replayed` or `skipped`.
    pub resolution: Option<String>,
    /// Replays tried.
    pub replays: u32,
    /// Why the last replay failed.
    pub replay_error: Option<String>,
    /// When an operator asked for a replay the consumer has not carried
    /// out yet.
    pub replay_requested_at: Option<DateTime<Utc>>,
}

impl ConsumerDeadLetter {
    /// `open`, `replayed` or `skipped`.
    pub fn status(&self) -> &str {
        self.resolution.as_deref().unwrap_or("open")
    }
}

const COLUMNS: &str = "consumer, source, message_id, subject, headers, body, reason, deliveries,
    parked_at, publish_error, resolved_at, resolution, replays, replay_error, replay_requested_at";

fn letter_of(row: &sqlx::postgres::PgRow) -> Result<ConsumerDeadLetter, sqlx::Error> {
    let headers: sqlx::types::Json<serde_json::Value> = row.try_get("headers")?;
    Ok(ConsumerDeadLetter {
        consumer: row.try_get("consumer")?,
        message: ParkedMessage {
            source: row.try_get("source")?,
            message_id: row.try_get("message_id")?,
            subject: row.try_get("subject")?,
            headers: headers_from_json(&headers.0),
            body: row.try_get("body")?,
            reason: row.try_get("reason")?,
            deliveries: u64::try_from(row.try_get::<i64, _>("deliveries")?).unwrap_or(0),
            publish_error: row.try_get("publish_error")?,
        },
        parked_at: row.try_get("parked_at")?,
        resolved_at: row.try_get("resolved_at")?,
        resolution: row.try_get("resolution")?,
        replays: u32::try_from(row.try_get::<i32, _>("replays")?).unwrap_or(0),
        replay_error: row.try_get("replay_error")?,
        replay_requested_at: row.try_get("replay_requested_at")?,
    })
}

impl Admin {
    /// Every consumer with an inbox or dead letters in the schema, by name.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>, Error> {
        let database = self.store.database();
        let (inbox, letters) = (
            self.store.table("inbox"),
            self.store.table("inbox_dead_letters"),
        );
        let mut session = database.session().await?;
        // language=SQL
        let rows = database
            .query(&format!(
                "WITH names AS (SELECT consumer FROM {inbox} UNION SELECT consumer FROM {letters})
                 SELECT n.consumer,
                        (SELECT count(*) FROM {inbox} i WHERE i.consumer = n.consumer) AS processed,
                        (SELECT max(processed_at) FROM {inbox} i WHERE i.consumer = n.consumer)
                            AS last_processed_at,
                        (SELECT count(*) FILTER (WHERE resolved_at IS NULL) FROM {letters} d
                          WHERE d.consumer = n.consumer) AS open,
                        (SELECT count(*) FILTER (WHERE resolved_at IS NOT NULL) FROM {letters} d
                          WHERE d.consumer = n.consumer) AS closed,
                        (SELECT count(*) FILTER (WHERE replay_requested_at IS NOT NULL
                                                   AND resolved_at IS NULL)
                           FROM {letters} d WHERE d.consumer = n.consumer) AS requested
                 FROM names n ORDER BY n.consumer"
            ))
            .fetch_all(&mut *session)
            .await?;
        session.finish().await?;
        let count = |row: &sqlx::postgres::PgRow, column: &str| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
        };
        Ok(rows
            .iter()
            .map(|row| {
                Ok(ConsumerInfo {
                    consumer: row.try_get("consumer")?,
                    processed: count(row, "processed")?,
                    last_processed_at: row.try_get("last_processed_at")?,
                    open_dead_letters: count(row, "open")?,
                    closed_dead_letters: count(row, "closed")?,
                    replays_requested: count(row, "requested")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// `consumer`'s dead letters, oldest first: the open ones, or all.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn consumer_dead_letters(
        &self,
        consumer: &str,
        include_closed: bool,
    ) -> Result<Vec<ConsumerDeadLetter>, Error> {
        let database = self.store.database();
        let mut session = database.session().await?;
        // language=SQL
        let rows = database
            .query(&format!(
                "SELECT {COLUMNS} FROM {} WHERE consumer = $1 AND ($2 OR resolved_at IS NULL)
                 ORDER BY parked_at, source, message_id",
                self.store.table("inbox_dead_letters")
            ))
            .bind(consumer)
            .bind(include_closed)
            .fetch_all(&mut *session)
            .await?;
        session.finish().await?;
        Ok(rows.iter().map(letter_of).collect::<Result<_, _>>()?)
    }

    /// One dead letter of `consumer`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConsumerDeadLetter`]; the database's.
    pub async fn consumer_dead_letter(
        &self,
        consumer: &str,
        source: &str,
        message_id: &str,
    ) -> Result<ConsumerDeadLetter, Error> {
        self.on_consumer_dead_letter(
            consumer,
            source,
            message_id,
            "SELECT {COLUMNS} FROM {table} WHERE consumer = $1 AND source = $2 AND message_id = $3",
        )
        .await
    }

    /// Gives up on an open dead letter for good: closed as skipped, never
    /// handled, kept as history.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConsumerDeadLetter`];
    /// [`Error::ConsumerDeadLetterClosed`] when it is closed already.
    pub async fn skip_consumer_dead_letter(
        &self,
        consumer: &str,
        source: &str,
        message_id: &str,
    ) -> Result<ConsumerDeadLetter, Error> {
        // Closed and recorded as processed in one statement, so that the
        // message delivered afresh (its durable consumer made again, the
        // event published again) is not handled either.
        let inbox = self.store.table("inbox");
        self.change_open(
            consumer,
            source,
            message_id,
            &format!(
                "WITH closed AS (
                     UPDATE {{table}} SET resolved_at = now(), resolution = 'skipped',
                         replay_requested_at = NULL
                     WHERE resolved_at IS NULL AND consumer = $1 AND source = $2
                       AND message_id = $3
                     RETURNING {{COLUMNS}}
                 ), recorded AS (
                     INSERT INTO {inbox} (consumer, source, message_id)
                     SELECT consumer, source, message_id FROM closed ON CONFLICT DO NOTHING
                 )
                 SELECT * FROM closed"
            ),
        )
        .await
    }

    /// Asks the running consumer to replay an open dead letter (it looks
    /// every second, runs its handler on it as on a delivery, and closes it
    /// as replayed, or records why it failed again). Without a running
    /// consumer the request waits for one.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConsumerDeadLetter`];
    /// [`Error::ConsumerDeadLetterClosed`] when it is closed already.
    pub async fn request_consumer_replay(
        &self,
        consumer: &str,
        source: &str,
        message_id: &str,
    ) -> Result<ConsumerDeadLetter, Error> {
        self.change_open(
            consumer,
            source,
            message_id,
            "UPDATE {table} SET replay_requested_at = now(), replay_error = NULL
             WHERE resolved_at IS NULL AND consumer = $1 AND source = $2 AND message_id = $3
             RETURNING {COLUMNS}",
        )
        .await
    }

    /// Runs `change` (a statement that changes the dead letter only while
    /// it is open, and returns it); says which error it is otherwise.
    async fn change_open(
        &self,
        consumer: &str,
        source: &str,
        message_id: &str,
        change: &str,
    ) -> Result<ConsumerDeadLetter, Error> {
        match self
            .on_consumer_dead_letter(consumer, source, message_id, change)
            .await
        {
            Err(Error::UnknownConsumerDeadLetter { .. }) => {
                let letter = self
                    .consumer_dead_letter(consumer, source, message_id)
                    .await?;
                Err(Error::ConsumerDeadLetterClosed {
                    consumer: letter.consumer,
                    message_source: letter.message.source,
                    message_id: letter.message.message_id,
                })
            }
            other => other,
        }
    }

    /// Runs `statement` on one dead letter: it names the table `{table}`
    /// and its columns `{COLUMNS}`, binds the key as `$1` to `$3`, and
    /// returns the dead letter's row.
    async fn on_consumer_dead_letter(
        &self,
        consumer: &str,
        source: &str,
        message_id: &str,
        statement: &str,
    ) -> Result<ConsumerDeadLetter, Error> {
        let statement = statement
            .replace("{table}", &self.store.table("inbox_dead_letters"))
            .replace("{COLUMNS}", COLUMNS);
        let database = self.store.database();
        let mut session = database.session().await?;
        let row = database
            .query(&statement)
            .bind(consumer)
            .bind(source)
            .bind(message_id)
            .fetch_optional(&mut *session)
            .await?;
        session.finish().await?;
        match row {
            Some(row) => Ok(letter_of(&row)?),
            None => Err(Error::UnknownConsumerDeadLetter {
                consumer: consumer.to_owned(),
                message_source: source.to_owned(),
                message_id: message_id.to_owned(),
            }),
        }
    }
}
