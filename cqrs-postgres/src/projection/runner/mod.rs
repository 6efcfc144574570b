//! The projection runner: reads the gap-safe log from a projection's
//! checkpoint and applies each batch in one transaction with the checkpoint.

mod apply;
mod failure;
mod held;
mod holder;
mod horizon;
mod lag;
mod lease_wait;
mod pace;
mod read_ahead;
mod requests;
mod run;

pub use self::lag::Lag;
pub use self::requests::Request;
pub(crate) use self::run::{Share, Wake};
mod session;
mod setup;
mod state;
mod subscription;
mod wait;

use std::sync::Arc;

use cqrskit_core::{LogFilter, Position, Projector};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use self::apply::roll_back;
use self::holder::Guarded;
use self::read_ahead::Batch;
use self::state::RunState;
use super::dead_letter::{DeadLetter, DeadLetterTable};
use super::projection_row::ProjectionRow;

use super::policy::RunnerOptions;
use crate::error::{Error, db};
use crate::row::LogRow;
use crate::{Partition, PostgresEventStore};

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
pub struct ProjectionRunner<P: Projector<PgConnection> + ?Sized> {
    store: PostgresEventStore,
    projector: Arc<P>,
    options: RunnerOptions,
    owner: String,
    /// The name of the projection's row: the projector's name, with the
    /// partition for a partitioned projection.
    name: String,
    partition: Partition,
    filter: LogFilter,
    projections: String,
    dead_letters: String,
    events: String,
    /// See `session::begin_statement`.
    begin_statement: String,
    /// See `session::listener_pool`.
    listener_pool: Option<PgPool>,
    /// The projector's event types, sorted and without repeats: what the
    /// projection records as its subscription.
    subscription: Vec<String>,
    /// Whether the projector reads metadata: if not, the log is read
    /// without it.
    reads_metadata: bool,
    /// What it learns while it runs.
    state: RunState<P::Event>,
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
            name: projector.name().to_owned(),
            partition: Partition::whole(),
            options: RunnerOptions::default(),
            begin_statement: session::begin_statement(&RunnerOptions::default()),
            listener_pool: session::listener_pool(store.database()),
            subscription: subscription(projector.event_types()),
            reads_metadata: projector.reads_metadata(),
            state: RunState::default(),
            store,
            projector,
            filter,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.begin_statement = session::begin_statement(&options);
        self.options = options;
        self
    }

    /// Names this runner in the lease (default: `runner-<uuid>`); use
    /// something an operator recognises, unique per process.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Applies only `partition` of the projection: the streams of its
    /// slices, with a checkpoint, lease and dead letters of its own under
    /// the row name [`Partition::row_name`]. A
    /// [`PartitionedRunner`](crate::PartitionedRunner) makes one per
    /// partition and shares them out among the instances that run it.
    pub fn for_partition(mut self, partition: Partition) -> Self {
        self.name = partition.row_name(self.projector.name());
        self.partition = partition;
        self
    }

    /// The partition it applies ([`Partition::whole`] unless set).
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The projection's name: its row's, which for a partition names the
    /// partition too (`ledger[2/8]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The projection's row: its checkpoint and its lease.
    fn row(&self) -> ProjectionRow<'_> {
        ProjectionRow {
            db: self.store.database(),
            table: &self.projections,
            name: &self.name,
        }
    }

    /// The store's dead letters.
    fn dead_letter_table(&self) -> DeadLetterTable<'_> {
        DeadLetterTable {
            db: self.store.database(),
            table: &self.dead_letters,
        }
    }

    /// The slices it reads, `None` for the whole log.
    fn slices(&self) -> Option<std::ops::RangeInclusive<u16>> {
        (!self.partition.is_whole()).then(|| self.partition.slices())
    }

    /// [`slices`](Self::slices) as the column's type, for queries.
    fn slice_bounds(&self) -> Option<(i16, i16)> {
        self.slices().map(|slices| {
            let column = |slice: u16| i16::try_from(slice).unwrap_or(i16::MAX);
            (column(*slices.start()), column(*slices.end()))
        })
    }

    /// This runner's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Tries to take the projection's lease. True when this runner holds it.
    ///
    /// # Errors
    ///
    /// [`Error::PartitionsDisagree`] when the projection runs in
    /// another number of partitions than this runner's; when the database
    /// cannot be reached.
    pub async fn acquire_lease(&self) -> Result<bool, Error> {
        self.check_layout().await?;
        let acquired = self
            .row()
            .acquire(&self.owner, self.options.lease_duration)
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
    pub async fn release_lease(&self) -> Result<(), Error> {
        let held = self.lease_slot().take();
        if let Some(held) = held {
            self.row()
                .release(&self.owner, held.token)
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
    /// [`Error::NotLeaseholder`] without the lease;
    /// [`Error::Stopped`] when the failure policy stops at an event;
    /// store failures. A batch that takes longer than the runner's
    /// statement bound (large events on a busy machine) is not an error:
    /// the runner halves its batches and tries again (see `pace`).
    pub async fn step(&self) -> Result<usize, Error> {
        loop {
            match self.step_at_pace().await {
                Err(error)
                    if pace::took_too_long(&error) && self.state.pace.slow_down(&self.options) =>
                {
                    let (rows, bytes) = self.state.pace.limits(&self.options);
                    tracing::warn!(
                        projection = self.name(),
                        %error,
                        rows,
                        bytes,
                        "a batch took longer than the runner's bound; halving the batches"
                    );
                }
                Ok(processed) => {
                    if processed > 0 {
                        self.state.pace.went_through();
                    }
                    return Ok(processed);
                }
                other => return other,
            }
        }
    }

    /// [`step`](Self::step) at the batch size of the moment.
    async fn step_at_pace(&self) -> Result<usize, Error> {
        // The lease first: setting up needs it.
        self.renewed_lease().await?;
        self.set_up_once().await?;
        let Guarded {
            mut tx,
            held,
            locked,
        } = self.guarded().await?;
        self.reload_held(&mut tx).await?;
        let Batch { rows, events } = match self.take_prefetched(locked.checkpoint) {
            Some(batch) => batch,
            None => Batch {
                rows: self.read_batch(&mut tx, locked.checkpoint).await?,
                events: None,
            },
        };
        let Some(last) = rows.last().map(|row| row.event().position) else {
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        };
        let span = tracing::info_span!(
            "projection_batch",
            projection = self.name(),
            from = %locked.checkpoint,
            to = %last,
            events = rows.len()
        );
        async {
            // Whether the batch was applied. Any failure short of a lost lease
            // (the projector's, a session the server ended, an aborted
            // transaction) sends the batch down the one-event-at-a-time path
            // below, which finds the event at fault; the transaction is
            // rolled back at once, so its connection is free for the read.
            let write = async {
                if self.apply_batch(&mut tx, &rows, events).await.is_err() {
                    roll_back(tx).await;
                    return Ok(false);
                }
                match self.advance(&mut tx, locked.checkpoint, last, held).await {
                    Ok(()) => {}
                    Err(error @ Error::NotLeaseholder { .. }) => return Err(error),
                    Err(error) => {
                        tracing::debug!(projection = self.name(), %error, "batch could not be committed; applying it event by event");
                        roll_back(tx).await;
                        return Ok(false);
                    }
                }
                // A COMMIT whose answer is lost is found out below: the
                // checkpoint is then past the batch, and nothing is redone.
                Ok::<_, Error>(tx.commit().await.is_ok())
            };
            // The next batch is read on another connection while this one is
            // written and committed: the log after `last` does not depend on
            // this transaction, and the next step uses what was read only if
            // the checkpoint is then at `last`.
            let (applied, next) = tokio::join!(write, self.read_ahead(last));
            if applied? {
                self.keep_prefetched(next);
                self.report_applied(&rows);
                return Ok(rows.len());
            }
            // Nothing of this batch is kept. Go through it one event at a time
            // to find the one that fails; a slow batch may have used up half
            // the lease meanwhile.
            let Some(Guarded { mut tx, held, .. }) = self.guarded_at(locked.checkpoint).await?
            else {
                return Ok(0);
            };
            match self.apply_all(&mut tx, &rows).await {
                Ok(()) => {
                    self.advance(&mut tx, locked.checkpoint, last, held).await?;
                    match tx.commit().await {
                        Ok(()) => {
                            self.report_applied(&rows);
                            Ok(rows.len())
                        }
                        // Every event applied, and the server refused the
                        // COMMIT (a deferred constraint): one event per
                        // transaction from here finds the one at fault.
                        Err(sqlx::Error::Database(error)) => {
                            let reason = format!("the commit was refused: {error}");
                            self.retry_or_give_up(&rows[0], reason, locked.checkpoint)
                                .await?;
                            Ok(1)
                        }
                        Err(error) => Err(db(error)),
                    }
                }
                Err((failed, reason)) => {
                    roll_back(tx).await;
                    let applied = self
                        .apply_prefix(&rows[..failed], locked.checkpoint)
                        .await?;
                    if applied < failed {
                        return Ok(applied);
                    }
                    let before = failed
                        .checked_sub(1)
                        .map_or(locked.checkpoint, |index| rows[index].event().position);
                    self.retry_or_give_up(&rows[failed], reason, before).await?;
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
    pub async fn catch_up(&self) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let processed = self.step().await?;
            if processed == 0 {
                return Ok(total);
            }
            total += processed;
        }
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
    /// [`Error::Reset`] when the hook fails (nothing changes);
    /// [`Error::NotLeaseholder`] without the lease.
    pub async fn rebuild(&self) -> Result<(), Error> {
        let Guarded {
            mut tx,
            held,
            locked,
        } = self.holding().await?;
        // The tables the reset clears must exist (a rebuild may be the
        // projection's first run, or follow a dropped table).
        self.run_setup(&mut tx).await?;
        self.projector
            .reset(&mut tx)
            .await
            .map_err(|source| Error::Reset {
                projection: self.name().to_owned(),
                source,
            })?;
        self.advance(&mut tx, locked.checkpoint, Position::START, held)
            .await?;
        self.record_subscription(&mut tx).await?;
        self.dead_letter_table()
            .clear_open(&mut tx, self.name())
            .await
            .map_err(db)?;
        self.clear_stop(&mut tx).await?;
        self.clear_request(&mut tx, Request::Rebuild).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Lets a stopped projection continue: it retries the event it stopped at.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn resume(&self) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        self.clear_stop(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// The projection's parked events that are not resolved yet, oldest first.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letter_table()
            .list(self.name(), false)
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
    pub async fn replay_dead_letters(&self) -> Result<ReplayOutcome, Error> {
        let outcome = self.replay_each_dead_letter().await;
        self.report_dead_letters().await;
        outcome
    }

    /// Sets the dead-letter gauge to the open dead letters' count.
    pub(super) async fn report_dead_letters(&self) {
        if let Ok(open) = self.dead_letters().await {
            metrics::gauge!(crate::telemetry::PROJECTION_DEAD_LETTERS, "projection" => self.name().to_owned())
                .set(open.len() as f64);
        }
    }

    /// Counts a committed batch and sets the lag to its last event's age.
    fn report_applied(&self, rows: &[LogRow]) {
        metrics::counter!(crate::telemetry::PROJECTION_EVENTS_APPLIED, "projection" => self.name().to_owned())
            .increment(rows.len() as u64);
        if let Some(last) = rows.last() {
            let age = (chrono::Utc::now() - last.event().recorded_at)
                .to_std()
                .unwrap_or_default();
            metrics::gauge!(crate::telemetry::PROJECTION_LAG, "projection" => self.name().to_owned())
                .set(age.as_secs_f64());
        }
    }

    async fn replay_each_dead_letter(&self) -> Result<ReplayOutcome, Error> {
        let mut outcome = ReplayOutcome::default();
        // A stream whose dead letter failed again: its later ones wait, so
        // that its events are never applied out of order.
        let mut failed_streams = std::collections::HashSet::new();
        for parked in self.dead_letters().await? {
            if failed_streams.contains(&parked.stream) {
                outcome.still_failing += 1;
                continue;
            }
            let mut tx = self.begin().await?;
            // A rebuild holds this row from its reset to dropping the open
            // dead letters: a replay must not write between the two.
            self.row().lock(&mut tx).await.map_err(db)?;
            let Some(parked) = self
                .dead_letter_table()
                .lock_open(&mut tx, parked.id)
                .await
                .map_err(db)?
            else {
                continue;
            };
            // Read on the transaction's own connection: a runner works with
            // a pool of one.
            let event = self
                .store
                .reader()
                .event_by_id_on(&mut tx, parked.event_id)
                .await?;
            let result = match event {
                Some(event) => self.apply_one_now(&mut tx, &LogRow::Readable(event)).await,
                None => Err(format!("event {} is no longer stored", parked.event_id)),
            };
            match result {
                Ok(()) => {
                    self.dead_letter_table()
                        .record_replay(&mut tx, parked.id, None)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.resolved += 1;
                }
                Err(reason) => {
                    roll_back(tx).await;
                    failed_streams.insert(parked.stream.clone());
                    let mut tx = self.begin().await?;
                    self.dead_letter_table()
                        .record_replay(&mut tx, parked.id, Some(&reason))
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    outcome.still_failing += 1;
                }
            }
        }
        Ok(outcome)
    }
}

/// Event types as a projection records them: sorted, without repeats.
fn subscription(types: &[&str]) -> Vec<String> {
    let mut types: Vec<String> = types.iter().map(|name| (*name).to_owned()).collect();
    types.sort();
    types.dedup();
    types
}

impl<P: Projector<PgConnection> + ?Sized> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("owner", &self.owner)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
