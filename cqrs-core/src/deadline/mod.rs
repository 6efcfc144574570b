//! Deadlines: a command scheduled for a later time ("cancel the order if it
//! is not paid within 30 minutes"), which a [`DeadlineRunner`] carries out
//! when it falls due, unless it was cancelled first.
//!
//! A process manager usually schedules and cancels them, reacting to events
//! (on `OrderCreated`, schedule the cancellation; on `OrderPaid`, cancel
//! it). Scheduling is idempotent by the deadline's id, which derives from
//! its name and aggregate unless given, so a process manager that sees an
//! event again schedules nothing new; and a cancelled deadline stays
//! cancelled. Several deadlines of one name for one aggregate each take a
//! key ([`Deadline::with_key`]), and are cancelled by it
//! ([`Deadline::id_of_key`]). Delivery is once in effect: the runner executes the command
//! with [`execute_once`](crate::CommandPipeline::execute_once) and the
//! deadline's id as command id, so a runner that dies after executing and
//! before recording the delivery, and a successor that delivers again,
//! store the command's events once.
//!
//! Cancelling and delivering are linearizable: a runner's claim is the
//! point of no return. A cancel before it means the command never runs; a
//! cancel after it is refused with [`Cancellation::Delivering`] (the
//! command ran or is running, and will be recorded as delivered) or
//! [`Cancellation::Delivered`]. The aggregate the command goes to decides
//! the race the deadline guards (a paid order refuses the cancellation).
//!
//! Time is the store's: due times and claims are decided by the clock of
//! the store every runner shares (the database's, for the PostgreSQL
//! store), never by a runner's own, so a runner on a host whose clock is
//! ahead does not deliver early. Stores: [`InMemoryDeadlines`] here (the
//! process's clock, or a [`ManualClock`] moved by hand in tests), a durable
//! one with the PostgreSQL store.

mod clock;
mod memory;
mod options;
mod runner;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::InMemoryDeadlines;
pub use options::DeadlineOptions;
pub use runner::{DeadlineRunner, Delivered};

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

    /// The same deadline under `key`, with the id [`id_of_key`](Self::id_of_key)
    /// gives: several deadlines of one name for one aggregate (a reminder
    /// per appointment of a patient, keyed by the appointment), each
    /// scheduled once and cancelled by a key the caller can compute again.
    pub fn with_key(mut self, key: &str) -> Self {
        self.id = Self::id_of_key(&self.name, &self.stream, key);
        self
    }

    /// The id of the deadline named `name` for `stream` under `key` (see
    /// [`with_key`](Self::with_key)): cancel it with
    /// `deadlines.cancel(Deadline::id_of_key(name, &stream, key))`.
    pub fn id_of_key(name: &str, stream: &StreamId, key: &str) -> Uuid {
        let key = format!(
            "{name}\u{1f}{}\u{1f}{}\u{1f}{key}",
            stream.aggregate_type, stream.aggregate_id
        );
        Uuid::new_v5(&DEADLINE_NAMESPACE, key.as_bytes())
    }

    /// With another id, made by the caller (prefer
    /// [`with_key`](Self::with_key), whose id the caller can compute again
    /// to cancel).
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
    /// Scheduled, not claimed by a runner yet: it can still be cancelled.
    Pending,
    /// Claimed by a runner: its command ran or is running (a runner that
    /// died is taken over once its claim lapses, and the command takes
    /// effect once); it will be recorded as delivered. Too late to cancel.
    Delivering,
    /// Cancelled before a runner claimed it; it will never be delivered.
    Cancelled,
    /// Delivered; what came of it (`executed`, `rejected: ...`).
    Delivered {
        /// What came of it.
        outcome: String,
    },
}

/// What came of cancelling a deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancellation {
    /// Cancelled: its command never runs.
    Cancelled,
    /// Cancelled before.
    AlreadyCancelled,
    /// Too late: a runner claimed it, and its command ran or is running.
    Delivering,
    /// Too late: delivered, with what came of it.
    Delivered {
        /// What came of it (`executed`, `rejected: ...`).
        outcome: String,
    },
    /// No deadline has this id.
    Unknown,
}

impl Cancellation {
    /// Whether this call cancelled it.
    pub fn cancelled(&self) -> bool {
        *self == Self::Cancelled
    }

    /// Why a cancel of a deadline in `state` is refused.
    pub fn refused(state: Option<DeadlineState>) -> Self {
        match state {
            None => Self::Unknown,
            Some(DeadlineState::Cancelled) => Self::AlreadyCancelled,
            Some(DeadlineState::Delivered { outcome }) => Self::Delivered { outcome },
            // Refused while pending: a runner claimed it in between.
            Some(DeadlineState::Delivering | DeadlineState::Pending) => Self::Delivering,
        }
    }
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

    /// Cancels the deadline `id` unless a runner claimed it: atomically
    /// with the claim, so [`Cancellation::Cancelled`] means its command
    /// never runs, and anything else says where it stands.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn cancel(&self, id: Uuid) -> Result<Cancellation, StoreError>;

    /// Claims, for `owner` and for `claim`, up to `limit` deadlines named
    /// one of `names` (those `owner` can deliver: runners of other services
    /// may share the store) and due now (by the store's clock), that are not
    /// cancelled, not delivered, and not claimed by a runner whose claim
    /// still holds; earliest first.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn claim_due(
        &self,
        owner: &str,
        names: &[String],
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

    /// How long until a runner may claim a deadline, by the store's clock:
    /// until the earliest one not yet delivered falls due, or its claim
    /// lapses (zero when one is claimable now); `None` when none waits.
    ///
    /// # Errors
    ///
    /// Back-end failures.
    async fn until_next_due(&self) -> Result<Option<Duration>, StoreError>;
}
