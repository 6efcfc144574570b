//! Deadlines in memory, for tests and single-process applications.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Deadline, DeadlineState, DeadlineStore};
use crate::StoreError;

/// One kept deadline and its claim.
#[derive(Clone, Debug)]
struct Entry {
    deadline: Deadline,
    state: DeadlineState,
    claim: Option<(String, DateTime<Utc>)>,
}

/// A [`DeadlineStore`] in memory: lost with the process.
#[derive(Debug, Default)]
pub struct InMemoryDeadlines {
    entries: Mutex<BTreeMap<Uuid, Entry>>,
}

impl InMemoryDeadlines {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl DeadlineStore for InMemoryDeadlines {
    async fn schedule(&self, deadline: &Deadline) -> Result<bool, StoreError> {
        let mut entries = self.entries();
        if entries.contains_key(&deadline.id) {
            return Ok(false);
        }
        entries.insert(
            deadline.id,
            Entry {
                deadline: deadline.clone(),
                state: DeadlineState::Pending,
                claim: None,
            },
        );
        Ok(true)
    }

    async fn cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        match self.entries().get_mut(&id) {
            Some(entry) if entry.state == DeadlineState::Pending => {
                entry.state = DeadlineState::Cancelled;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        claim: Duration,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError> {
        let until = now + chrono::Duration::from_std(claim).unwrap_or(chrono::Duration::MAX);
        let mut entries = self.entries();
        let mut due: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|entry| {
                entry.state == DeadlineState::Pending
                    && entry.deadline.due_at <= now
                    && entry.claim.as_ref().is_none_or(|(_, until)| *until < now)
            })
            .collect();
        due.sort_by_key(|entry| entry.deadline.due_at);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|entry| {
                entry.claim = Some((owner.to_owned(), until));
                entry.deadline.clone()
            })
            .collect())
    }

    async fn complete(&self, id: Uuid, owner: &str, outcome: &str) -> Result<bool, StoreError> {
        match self.entries().get_mut(&id) {
            Some(entry)
                if entry.state == DeadlineState::Pending
                    && entry
                        .claim
                        .as_ref()
                        .is_some_and(|(holder, _)| holder == owner) =>
            {
                entry.state = DeadlineState::Delivered {
                    outcome: outcome.to_owned(),
                };
                entry.claim = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn state(&self, id: Uuid) -> Result<Option<DeadlineState>, StoreError> {
        Ok(self.entries().get(&id).map(|entry| entry.state.clone()))
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .entries()
            .values()
            .filter(|entry| entry.state == DeadlineState::Pending)
            .map(|entry| entry.deadline.due_at)
            .min())
    }
}
