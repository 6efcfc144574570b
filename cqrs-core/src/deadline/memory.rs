//! Deadlines in memory, for tests and single-process applications.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Cancellation, Clock, Deadline, DeadlineState, DeadlineStore, SystemClock};
use crate::StoreError;

/// One kept deadline and its claim.
#[derive(Clone, Debug)]
struct Entry {
    deadline: Deadline,
    state: DeadlineState,
    claim: Option<(String, DateTime<Utc>)>,
}

/// A [`DeadlineStore`] in memory: lost with the process. Its clock (the
/// system's unless given) decides what is due.
pub struct InMemoryDeadlines {
    entries: Mutex<BTreeMap<Uuid, Entry>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryDeadlines {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for InMemoryDeadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryDeadlines")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl InMemoryDeadlines {
    /// An empty store on the system's clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store, deciding what is due by `clock` (a [`ManualClock`]
    /// in tests).
    ///
    /// [`ManualClock`]: super::ManualClock
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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

    async fn cancel(&self, id: Uuid) -> Result<Cancellation, StoreError> {
        let mut entries = self.entries();
        match entries.get_mut(&id) {
            Some(entry) if entry.state == DeadlineState::Pending && entry.claim.is_none() => {
                entry.state = DeadlineState::Cancelled;
                Ok(Cancellation::Cancelled)
            }
            entry => Ok(Cancellation::refused(entry.map(|entry| entry.current()))),
        }
    }

    async fn claim_due(
        &self,
        owner: &str,
        names: &[String],
        claim: Duration,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError> {
        let now = self.clock.now();
        let until = chrono::Duration::from_std(claim)
            .ok()
            .and_then(|claim| now.checked_add_signed(claim))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut entries = self.entries();
        let mut due: Vec<&mut Entry> = entries
            .values_mut()
            .filter(|entry| {
                entry.state == DeadlineState::Pending
                    && names.contains(&entry.deadline.name)
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
        Ok(self.entries().get(&id).map(Entry::current))
    }

    async fn until_next_due(&self) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .entries()
            .values()
            .filter(|entry| entry.state == DeadlineState::Pending)
            // Claimed: claimable again once the claim lapses.
            .map(|entry| match &entry.claim {
                Some((_, until)) => entry.deadline.due_at.max(*until),
                None => entry.deadline.due_at,
            })
            .min()
            .map(|due| (due - now).to_std().unwrap_or(Duration::ZERO)))
    }
}

impl Entry {
    /// Where it stands: a claimed pending deadline is being delivered.
    fn current(&self) -> DeadlineState {
        match &self.state {
            DeadlineState::Pending if self.claim.is_some() => DeadlineState::Delivering,
            state => state.clone(),
        }
    }
}
