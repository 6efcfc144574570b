//! An operator's view of parked events: list, show, skip.

use cqrskit_core::{EventStore, StoredEvent};

use super::Admin;
use crate::Error;
use crate::projection::DeadLetter;

impl Admin {
    /// `projection`'s dead letters, in log order: the open ones, or all.
    /// A partitioned projection's name gives every partition's.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProjection`]; the database's.
    pub async fn dead_letters(
        &self,
        projection: &str,
        include_closed: bool,
    ) -> Result<Vec<DeadLetter>, Error> {
        let mut letters = Vec::new();
        for row in self.rows_of(projection).await? {
            letters.extend(self.dead_letter_table().list(&row, include_closed).await?);
        }
        if letters.len() > 1 {
            letters.sort_by_key(|letter| letter.position);
        }
        Ok(letters)
    }

    /// One dead letter with its event (`None` when the event is no longer
    /// in the store).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`], or the database's.
    pub async fn dead_letter(&self, id: i64) -> Result<(DeadLetter, Option<StoredEvent>), Error> {
        let letter = self
            .dead_letter_table()
            .by_id(id)
            .await?
            .ok_or(Error::UnknownDeadLetter(id))?;
        let event = self.store.event_by_id(letter.event_id).await?;
        Ok((letter, event))
    }

    /// Gives up on an open dead letter: closed as skipped, never applied.
    /// Its projection's read model goes on without that event.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`], [`Error::DeadLetterClosed`],
    /// or the database's.
    pub async fn skip_dead_letter(&self, id: i64) -> Result<DeadLetter, Error> {
        if self.dead_letter_table().skip(id).await? {
            return Ok(self.dead_letter(id).await?.0);
        }
        match self.dead_letter_table().by_id(id).await? {
            None => Err(Error::UnknownDeadLetter(id)),
            Some(_) => Err(Error::DeadLetterClosed(id)),
        }
    }
}
