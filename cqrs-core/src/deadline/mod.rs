//! Deadlines: a command scheduled for a later time ("cancel the order if it
//! is not paid within 30 minutes"), which a [`DeadlineRunner`] carries out
//! when it falls due, unless it was cancelled first.
//!
//! A process manager usually schedules and cancels them, reacting to events
//! (on `OrderCreated`, schedule the cancellation; on `OrderPaid`, cancel
//! it). Scheduling is idempotent by the deadline's id, which derives from
//! its name and aggregate unless given, so a process manager that sees an
//! event again schedules nothing new; and a cancelled deadline stays
//! cancelled. Delivery is once in effect: the runner executes the command
//! with [`execute_once`](crate::CommandPipeline::execute_once) and the
//! deadline's id as command id, so a runner that dies after executing and
//! before recording the delivery, and a successor that delivers again,
//! store the command's events once.
//!
//! Stores: [`InMemoryDeadlines`] here, a durable one with the PostgreSQL
//! store. Time comes from a [`Clock`]: [`ManualClock`] moves it by hand in
//! tests.

mod clock;
mod memory;
mod runner;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::InMemoryDeadlines;
pub use runner::{DeadlineOptions, DeadlineRunner, Delivered};

use crate::{EventEnvelope, Metadata, StoreError, StreamId};

/// A command to carry out on one aggregate at a later time.
#[derive(Clone, Debug, PartialEq)]
pub struct Deadline {
    /// Its id: scheduling the same id again changes nothing.
    pub id: Uuid,
    /// What it is for (`payment-timeout`): the runner delivers it through
    /// the route registered under this name.
    pub name: String,
    /// The aggregate the command is for.
    pub stream: StreamId,
    /// When it falls due (kept to the microsecond, as PostgreSQL does).
    pub due_at: DateTime<Utc>,
    /// The command, as JSON.
    pub command: serde_json::Value,
    /// The metadata the command's events carry (correlation and causation).
    pub metadata: Metadata,
}

impl Deadline {
    /// `command` for `stream`, due at `due_at`, named `name`, with the id
    /// [`id_of`](Self::id_of) gives: one deadline of a name per aggregate.
    ///
    /// # Errors
    ///
    /// When the command cannot be written as JSON.
    pub fn new<C: Serialize>(
        name: impl Into<String>,
        stream: StreamId,
        due_at: DateTime<Utc>,
        command: &C,
    ) -> Result<Self, serde_json::Error> {
        let name = name.into();
        let command = serde_json::to_value(command)?;
        Ok(Self {
            id: Self::id_of(&name, &stream),
            name,
            stream,
            due_at: chrono::SubsecRound::trunc_subsecs(due_at, 6),
            command,
            metadata: Metadata::new(),
        })
    }

    /// The id of the deadline named `name` for `stream`: the same on every
    /// call, so a process manager can cancel what it scheduled without
    /// keeping the id, and scheduling twice schedules once.
    pub fn id_of(name: &str, stream: &StreamId) -> Uuid {
        let key = format!(
            "{name}\u{1f}{}\u{1f}{}",
            stream.aggregate_type, stream.aggregate_id
        );
        Uuid::new_v5(&DEADLINE_NAMESPACE, key.as_bytes())
    }

    /// With another id (several deadlines of one name for one aggregate).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Its command's events are caused by `event`: the correlation id
    /// carries over and the event's id becomes the causation id.
    pub fn caused_by<E>(mut self, event: &EventEnvelope<E>) -> Self {
        self.metadata = Metadata::caused_by(event);
        self
    }
}

/// The namespace of derived deadline ids.
const DEADLINE_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_2d47_3a55_4c1e_9e0d_7c2a_41f3_d3a1);

/// Where a deadline stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineState {
    /// Scheduled, not yet delivered.
    Pending,
    /// Cancelled before it fell due; it will never be delivered.
    Cancelled,
    /// Delivered; what came of it (`executed`, `rejected: ...`).
    Delivered {
        /// What came of it.
        outcome: String,
    },
}

/// Where deadlines are kept. Delivery is claimed for a while by one runner
/// (`owner`), so several runners share the work and a runner that died
/// leaves its claims to lapse.
#[async_trait]
pub trait DeadlineStore: Send + Sync {
    /// Schedules `deadline`; `false` when its id is known already (pending,
    /// cancelled or delivered), which is left as it is.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn schedule(&self, deadline: &Deadline) -> Result<bool, StoreError>;

    /// Cancels the deadline `id`; `false` when it is not pending (unknown,
    /// cancelled or delivered already).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn cancel(&self, id: Uuid) -> Result<bool, StoreError>;

    /// Claims up to `limit` pending deadlines due at `now` and not claimed
    /// by a runner whose claim still holds, for `claim` from `now`,
    /// earliest first.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        claim: Duration,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError>;

    /// Records that `owner` delivered `id`, with `outcome`; `false` when
    /// `owner` no longer holds the claim (another runner took it over).
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn complete(&self, id: Uuid, owner: &str, outcome: &str) -> Result<bool, StoreError>;

    /// Where the deadline `id` stands, `None` when unknown.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn state(&self, id: Uuid) -> Result<Option<DeadlineState>, StoreError>;

    /// When the earliest pending deadline falls due.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}
