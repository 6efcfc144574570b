//! The projection runner: reads the gap-safe log from a projection's
//! checkpoint and applies each batch in one transaction with the checkpoint.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use cqrs_core::{LogFilter, Position, Projector, StoredEvent};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use super::checkpoint::{self, Locked};
use super::dead_letter::{self, DeadLetter};
use super::error::{RunnerError, db};
use super::lease::{self, Lease};
use super::policy::{OnExhausted, RunnerOptions};
use crate::PostgresEventStore;

/// How far a projection is behind the head of the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lag {
    /// The projection's checkpoint.
    pub checkpoint: Position,
    /// Events of its types after the checkpoint.
    pub events: u64,
    /// How long ago the oldest of them was recorded (zero when caught up).
    pub behind: Duration,
}

/// The outcome of replaying parked events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Dead letters the projector now processed.
    pub resolved: usize,
    /// Dead letters that failed again (their error and attempts are updated).
    pub still_failing: usize,
}

/// Keeps one projection up to date from the global log.
///
/// Each batch is one transaction: lock the projection's row, check the lease,
/// read events after the checkpoint (only the types the projector declares),
/// apply them through the projector *in that transaction*, move the
/// checkpoint by compare-and-set, commit. A crash anywhere rolls everything
/// back together, so a read model in the same database sees every event
/// exactly once. Effects outside the database are at-least-once: a handler
/// sees the event id to deduplicate them.
///
/// Only the lease holder applies batches: [`run`](Self::run) takes the lease,
/// renews it while it works, and another runner of the same projection takes
/// over when it lapses.
pub struct ProjectionRunner<P: ?Sized> {
    store: PostgresEventStore,
    projector: Arc<P>,
    options: RunnerOptions,
    owner: String,
    filter: LogFilter,
    projections: String,
    dead_letters: String,
    events: String,
    lease: Mutex<Option<Lease>>,
    prefetched: Mutex<Option<Prefetched>>,
}

/// The batch after a committed one, read while that one was written.
struct Prefetched {
    /// The position the events follow.
    after: Position,
    events: Vec<StoredEvent>,
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// A runner for `projector` over `store`, with default options and a
    /// fresh owner id.
    pub fn new(store: PostgresEventStore, projector: Arc<P>) -> Self {
        let filter = LogFilter::event_types(projector.event_types().iter().copied());
        Self {
            projections: store.table("projections"),
            dead_letters: store.table("dead_letters"),
            events: store.table("events"),
            owner: format!("runner-{}", Uuid::now_v7()),
            options: RunnerOptions::default(),
            lease: Mutex::new(None),
            prefetched: Mutex::new(None),
            store,
            projector,
            filter,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// Names this runner in the lease (default: `runner-<uuid>`); use
    /// something an operator recognises, unique per process.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        self.projector.name()
    }

    /// This runner's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Tries to take the projection's lease. True when this runner holds it.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn acquire_lease(&self) -> Result<bool, RunnerError> {
        let acquired = lease::acquire(
            self.store.pool(),
            &self.projections,
            self.name(),
            &self.owner,
            self.options.lease_duration,
        )
        .await
        .map_err(db)?;
        *self.lease_slot() = acquired;
        Ok(acquired.is_some())
    }

    /// Gives the lease up, so another runner can take over at once.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached (the lease then lapses by itself).
    pub async fn release_lease(&self) -> Result<(), RunnerError> {
        let held = self.lease_slot().take();
        if let Some(held) = held {
            lease::release(
                self.store.pool(),
                &self.projections,
                self.name(),
                &self.owner,
                held.token,
            )
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    /// Applies one batch. Returns how many events it processed (applied, or
    /// parked by the failure policy); 0 when caught up.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NotLeaseholder`] without the lease;
    /// [`RunnerError::Stopped`] when the failure policy stops at an event;
    /// store failures.
    pub async fn step(&self) -> Result<usize, RunnerError> {
        let held = self.renewed_lease().await?;
        let mut tx = self.begin().await?;
        let locked = self.guard(&mut tx, held).await?;
        let size = self.options.batch_size.max(1);
        let events = match self.take_prefetched(locked.checkpoint) {
            Some(events) => events,
            None => {
                self.store
                    .read_log_on(&mut tx, locked.checkpoint, &self.filter, size)
                    .await?
            }
        };
        let Some(last) = events.last().map(|event| event.position) else {
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        };
        let span = tracing::info_span!(
            "projection_batch",
            projection = self.name(),
            from = %locked.checkpoint,
            to = %last,
            events = events.len()
        );
        async {
            // Returns whether the batch was applied; a failed one is rolled
            // back at once, so its connection is free for the read below.
            let write = async {
                if self.apply_batch(&mut tx, &events).await.is_err() {
                    tx.rollback().await.map_err(db)?;
                    return Ok(false);
                }
                self.advance(&mut tx, locked.checkpoint, last, held).await?;
                tx.commit().await.map_err(db)?;
                Ok::<_, RunnerError>(true)
            };
            // The next batch is read on another connection while this one is
            // written and committed: the log after `last` does not depend on
            // this transaction, and the next step uses what was read only if
            // the checkpoint is then at `last`.
            let (applied, next) = tokio::join!(write, self.read_ahead(last, size));
            if applied? {
                if let Some(next) = next {
                    self.keep_prefetched(last, next);
                }
                return Ok(events.len());
            }
            // Nothing of this batch is kept. Go through it one event at a time
            // to find the one that fails.
            let mut tx = self.begin().await?;
            let relocked = self.guard(&mut tx, held).await?;
            if relocked.checkpoint != locked.checkpoint {
                tx.rollback().await.map_err(db)?;
                return Ok(0);
            }
            match self.apply_all(&mut tx, &events).await {
                Ok(()) => {
                    self.advance(&mut tx, locked.checkpoint, last, held).await?;
                    tx.commit().await.map_err(db)?;
                    Ok(events.len())
                }
                Err((failed, reason)) => {
                    tx.rollback().await.map_err(db)?;
                    let applied = self
                        .apply_prefix(&events[..failed], locked.checkpoint, held)
                        .await?;
                    if applied < failed {
                        return Ok(applied);
                    }
                    let before = failed
                        .checked_sub(1)
                        .map_or(locked.checkpoint, |index| events[index].position);
                    self.retry_or_give_up(&events[failed], reason, before)
                        .await?;
                    Ok(failed + 1)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Applies batches until the log holds nothing more for the projection.
    /// Returns how many events were processed.
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step).
    pub async fn catch_up(&self) -> Result<usize, RunnerError> {
        let mut total = 0;
        loop {
            let processed = self.step().await?;
            if processed == 0 {
                return Ok(total);
            }
            total += processed;
        }
    }

    /// Runs until `shutdown` completes: takes the lease (waiting while another
    /// runner holds it), catches up, then waits for appends, woken by
    /// `LISTEN`/`NOTIFY` and, in case a notification is lost or `LISTEN` is
    /// unavailable (behind a transaction-pooling proxy), by polling every
    /// [`poll_interval`](RunnerOptions::poll_interval). Renews the lease while
    /// it works and releases it on shutdown.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Stopped`] / [`RunnerError::StillStopped`] when the
    /// projection is stopped at a poison event. Unreachable databases and lost
    /// leases are waited out, not returned.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RunnerError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut listener = self.listen().await;
        let idle = self
            .options
            .poll_interval
            .min(self.options.lease_duration / 3)
            .max(Duration::from_millis(10));
        loop {
            let holds = self.lease_slot().is_some();
            let acquired = holds || self.acquire_lease().await.unwrap_or_else(|error| {
                tracing::warn!(projection = self.name(), %error, "cannot take the lease; retrying");
                false
            });
            let outcome = if acquired {
                self.catch_up().await.map(|_| ())
            } else {
                Ok(())
            };
            match outcome {
                Ok(()) => {}
                Err(error @ (RunnerError::Stopped { .. } | RunnerError::StillStopped { .. })) => {
                    let _ = self.release_lease().await;
                    return Err(error);
                }
                Err(RunnerError::NotLeaseholder { .. }) => {
                    tracing::info!(projection = self.name(), owner = %self.owner, "lease lost; waiting to take it back");
                    self.lease_slot().take();
                }
                Err(error) => {
                    tracing::warn!(projection = self.name(), %error, "projection runner failed; retrying");
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                notified = wake => {
                    if let Err(error) = notified {
                        tracing::warn!(projection = self.name(), %error, "LISTEN connection failed; polling");
                        listener = None;
                    }
                }
                () = tokio::time::sleep(idle) => {
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                }
            }
        }
        self.release_lease().await
    }

    /// The committed checkpoint.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn checkpoint(&self) -> Result<Position, RunnerError> {
        checkpoint::read(self.store.pool(), &self.projections, self.name())
            .await
            .map_err(db)
    }

    /// How far behind the head of the log the projection is.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn lag(&self) -> Result<Lag, RunnerError> {
        let checkpoint = self.checkpoint().await?;
        // language=SQL
        let row = sqlx::query(&format!(
            "SELECT count(*) AS events, extract(epoch FROM now() - min(recorded_at))::float8 AS behind
             FROM {} WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)
               AND ($3::text[] IS NULL OR event_type = ANY($3))",
            self.events
        ))
        .bind(checkpoint::as_i64(checkpoint.transaction))
        .bind(checkpoint::as_i64(checkpoint.sequence))
        .bind((!self.filter.event_types.is_empty()).then_some(&self.filter.event_types))
        .fetch_one(self.store.pool())
        .await
        .map_err(db)?;
        let events: i64 = row.try_get("events").map_err(db)?;
        let behind: Option<f64> = row.try_get("behind").map_err(db)?;
        Ok(Lag {
            checkpoint,
            events: events.max(0).unsigned_abs(),
            behind: Duration::from_secs_f64(behind.unwrap_or(0.0).max(0.0)),
        })
    }

    /// Starts the projection over: in one transaction, the projector's reset
    /// hook clears its read model, the checkpoint goes back to the start and
    /// the projection's open dead letters are dropped (the replay meets those
    /// events again). Then [`catch_up`](Self::catch_up) or [`run`](Self::run)
    /// replays the log. Requires the lease.
    ///
    /// To rebuild a new version beside the live one (blue/green), give the new
    /// projector another name and its own tables, run it until its
    /// [`lag`](Self::lag) is zero, then switch readers over.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Reset`] when the hook fails (nothing changes);
    /// [`RunnerError::NotLeaseholder`] without the lease.
    pub async fn rebuild(&self) -> Result<(), RunnerError> {
        let held = self.renewed_lease().await?;
        let mut tx = self.begin().await?;
        let locked = self.lock_as_holder(&mut tx, held).await?;
        self.projector
            .reset(&mut tx)
            .await
            .map_err(|source| RunnerError::Reset {
                projection: self.name().to_owned(),
                source,
            })?;
        self.advance(&mut tx, locked.checkpoint, Position::START, held)
            .await?;
        dead_letter::clear_open(&mut tx, &self.dead_letters, self.name())
            .await
            .map_err(db)?;
        self.clear_stop(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Lets a stopped projection continue: it retries the event it stopped at.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn resume(&self) -> Result<(), RunnerError> {
        let mut tx = self.begin().await?;
        self.clear_stop(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// The projection's parked events that are not resolved yet, oldest first.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, RunnerError> {
        dead_letter::list(self.store.pool(), &self.dead_letters, self.name(), false)
            .await
            .map_err(db)
    }

    /// Tries every open dead letter again, each in its own transaction. The
    /// main checkpoint does not move: the projection had already gone past
    /// these events.
    ///
    /// # Errors
    ///
    /// Store failures; a projector failure only counts as `still_failing`.
    pub async fn replay_dead_letters(&self) -> Result<ReplayOutcome, RunnerError> {
        let mut outcome = ReplayOutcome::default();
        for parked in self.dead_letters().await? {
            let mut tx = self.begin().await?;
            let Some(parked) = dead_letter::lock_open(&mut tx, &self.dead_letters, parked.id)
                .await
                .map_err(db)?
            else {
                continue;
            };
            let event = cqrs_core::EventStore::event_by_id(&self.store, parked.event_id).await?;
            let result = match &event {
                Some(event) => self.apply_one(&mut tx, event).await,
                None => Err(format!("event {} is no longer stored", parked.event_id)),
            };
            match result {
                Ok(()) => {
                    dead_letter::record_replay(&mut tx, &self.dead_letters, parked.id, None)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.resolved += 1;
                }
                Err(reason) => {
                    tx.rollback().await.map_err(db)?;
                    let mut tx = self.begin().await?;
                    dead_letter::record_replay(
                        &mut tx,
                        &self.dead_letters,
                        parked.id,
                        Some(&reason),
                    )
                    .await
                    .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.still_failing += 1;
                }
            }
        }
        Ok(outcome)
    }

    fn lease_slot(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        // Only ever set or taken whole: a panic cannot leave it half-written.
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn not_leaseholder(&self) -> RunnerError {
        RunnerError::NotLeaseholder {
            projection: self.name().to_owned(),
            owner: self.owner.clone(),
        }
    }

    /// The lease, renewed when less than half of it is left.
    async fn renewed_lease(&self) -> Result<Lease, RunnerError> {
        let held = (*self.lease_slot()).ok_or_else(|| self.not_leaseholder())?;
        let half = chrono::Duration::from_std(self.options.lease_duration / 2).unwrap_or_default();
        if held.expires_at - Utc::now() > half {
            return Ok(held);
        }
        let renewed = lease::renew(
            self.store.pool(),
            &self.projections,
            self.name(),
            &self.owner,
            held.token,
            self.options.lease_duration,
        )
        .await
        .map_err(db)?;
        *self.lease_slot() = renewed;
        renewed.ok_or_else(|| self.not_leaseholder())
    }

    /// Reads the batch after `after` on a connection of its own, if the
    /// pool has one to spare right away: reading ahead must never make the
    /// step wait for a connection. `None` when it did not read or read
    /// nothing (the next step reads again).
    async fn read_ahead(&self, after: Position, size: usize) -> Option<Vec<StoredEvent>> {
        let pool = self.store.pool();
        let spare = pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections();
        if !spare {
            return None;
        }
        let mut connection =
            match tokio::time::timeout(Duration::from_millis(100), pool.acquire()).await {
                Ok(Ok(connection)) => connection,
                _ => return None,
            };
        match self
            .store
            .read_log_on(&mut connection, after, &self.filter, size)
            .await
        {
            Ok(events) if !events.is_empty() => Some(events),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(projection = self.name(), %error, "reading ahead failed; the next step reads again");
                None
            }
        }
    }

    /// The batch read ahead, if it follows `checkpoint`.
    fn take_prefetched(&self, checkpoint: Position) -> Option<Vec<StoredEvent>> {
        let mut slot = self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            Some(prefetched) if prefetched.after == checkpoint => Some(prefetched.events),
            _ => None,
        }
    }

    fn keep_prefetched(&self, after: Position, events: Vec<StoredEvent>) {
        *self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Prefetched { after, events });
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, RunnerError> {
        self.store.pool().begin().await.map_err(db)
    }

    /// Locks the projection's row and checks that this runner holds the lease.
    async fn lock_as_holder(
        &self,
        tx: &mut PgConnection,
        held: Lease,
    ) -> Result<Locked, RunnerError> {
        let locked = checkpoint::lock(tx, &self.projections, self.name())
            .await
            .map_err(db)?
            .ok_or_else(|| self.not_leaseholder())?;
        let holder = locked.owner.as_deref() == Some(self.owner.as_str())
            && locked.token == held.token
            && locked.lease_valid;
        if holder {
            Ok(locked)
        } else {
            Err(self.not_leaseholder())
        }
    }

    /// [`lock_as_holder`](Self::lock_as_holder), refusing a stopped projection.
    async fn guard(&self, tx: &mut PgConnection, held: Lease) -> Result<Locked, RunnerError> {
        let locked = self.lock_as_holder(tx, held).await?;
        match &locked.stop_reason {
            Some(reason) => Err(RunnerError::StillStopped {
                projection: self.name().to_owned(),
                reason: reason.clone(),
            }),
            None => Ok(locked),
        }
    }

    async fn advance(
        &self,
        tx: &mut PgConnection,
        from: Position,
        to: Position,
        held: Lease,
    ) -> Result<(), RunnerError> {
        let moved = checkpoint::advance(tx, &self.projections, self.name(), from, to, held.token)
            .await
            .map_err(db)?;
        if moved {
            Ok(())
        } else {
            Err(self.not_leaseholder())
        }
    }

    /// Decodes and applies one event; the error as text for the records.
    async fn apply_one(&self, tx: &mut PgConnection, event: &StoredEvent) -> Result<(), String> {
        let decoded = event
            .decode_ref::<P::Event>()
            .map_err(|error| error.to_string())?;
        self.projector
            .project(&decoded, tx)
            .await
            .map_err(|error| error.to_string())
    }

    /// Decodes every event and hands them to the projector as one batch.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), String> {
        let decoded = events
            .iter()
            .map(StoredEvent::decode_ref::<P::Event>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| error.to_string())?;
        self.projector
            .project_batch(&decoded, tx)
            .await
            .map_err(|error| error.to_string())
    }

    /// Applies every event; on a failure, the index of the failing event and why.
    async fn apply_all(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), (usize, String)> {
        for (index, event) in events.iter().enumerate() {
            self.apply_one(tx, event)
                .await
                .map_err(|reason| (index, reason))?;
        }
        Ok(())
    }

    /// Applies and commits the events before a failing one. Returns how many
    /// were applied (fewer than asked if the projector now fails earlier).
    async fn apply_prefix(
        &self,
        events: &[StoredEvent],
        from: Position,
        held: Lease,
    ) -> Result<usize, RunnerError> {
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(0);
        };
        let mut tx = self.begin().await?;
        let locked = self.guard(&mut tx, held).await?;
        if locked.checkpoint != from || self.apply_all(&mut tx, events).await.is_err() {
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        }
        self.advance(&mut tx, from, last, held).await?;
        tx.commit().await.map_err(db)?;
        Ok(events.len())
    }

    /// Retries `event` with backoff; then parks it or stops, as configured.
    async fn retry_or_give_up(
        &self,
        event: &StoredEvent,
        mut reason: String,
        before: Position,
    ) -> Result<(), RunnerError> {
        let policy = self.options.failure;
        let mut attempts = 1;
        while attempts < policy.max_attempts.max(1) {
            attempts += 1;
            tracing::warn!(
                projection = self.name(),
                event_id = %event.event_id,
                attempt = attempts,
                error = %reason,
                "retrying event"
            );
            tokio::time::sleep(policy.backoff(attempts)).await;
            let held = self.renewed_lease().await?;
            let mut tx = self.begin().await?;
            let locked = self.guard(&mut tx, held).await?;
            if locked.checkpoint != before {
                // Another runner moved on meanwhile; nothing left for us here.
                tx.rollback().await.map_err(db)?;
                return Ok(());
            }
            match self.apply_one(&mut tx, event).await {
                Ok(()) => {
                    self.advance(&mut tx, before, event.position, held).await?;
                    return tx.commit().await.map_err(db);
                }
                Err(error) => {
                    tx.rollback().await.map_err(db)?;
                    reason = error;
                }
            }
        }

        let held = self.renewed_lease().await?;
        let mut tx = self.begin().await?;
        let locked = self.guard(&mut tx, held).await?;
        if locked.checkpoint != before {
            tx.rollback().await.map_err(db)?;
            return Ok(());
        }
        match policy.on_exhausted {
            OnExhausted::Park => {
                dead_letter::park(
                    &mut tx,
                    &self.dead_letters,
                    self.name(),
                    event,
                    &reason,
                    attempts,
                )
                .await
                .map_err(db)?;
                self.advance(&mut tx, before, event.position, held).await?;
                tx.commit().await.map_err(db)?;
                tracing::error!(
                    projection = self.name(),
                    event_id = %event.event_id,
                    error = %reason,
                    attempts,
                    "event parked in the dead-letter table"
                );
                Ok(())
            }
            OnExhausted::Stop => {
                let stop = RunnerError::Stopped {
                    projection: self.name().to_owned(),
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    stream: event.stream.clone(),
                    version: event.version,
                    position: event.position,
                    attempts,
                    reason,
                };
                // language=SQL
                sqlx::query(&format!(
                    "UPDATE {} SET stopped_at = now(), stop_reason = $2, updated_at = now() WHERE name = $1",
                    self.projections
                ))
                .bind(self.name())
                .bind(stop.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tracing::error!(projection = self.name(), error = %stop, "projection stopped");
                Err(stop)
            }
        }
    }

    async fn clear_stop(&self, tx: &mut PgConnection) -> Result<(), RunnerError> {
        // language=SQL
        sqlx::query(&format!(
            "UPDATE {} SET stopped_at = NULL, stop_reason = NULL, updated_at = now() WHERE name = $1",
            self.projections
        ))
        .bind(self.name())
        .execute(tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// A listener on the store's channel, or `None` (then the runner polls).
    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(self.store.pool()).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(projection = self.name(), %error, "cannot LISTEN; polling instead");
                return None;
            }
        };
        match listener.listen(&self.store.notification_channel()).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(projection = self.name(), %error, "cannot LISTEN; polling instead");
                None
            }
        }
    }
}

impl<P: ?Sized> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("owner", &self.owner)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
