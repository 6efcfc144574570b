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
mod replay;
mod requests;
mod run;
mod selection;
mod session;
mod setup;
mod state;
mod step;
mod subscription;
mod wait;

pub use self::lag::Lag;
pub use self::replay::ReplayOutcome;
pub use self::requests::Request;
pub(crate) use self::run::{Share, Wake};

use std::sync::Arc;

use cqrskit_core::{Position, Projector};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use self::holder::Guarded;
use self::selection::Selection;
use self::state::RunState;
use super::dead_letter::DeadLetterTable;
use super::projection_row::ProjectionRow;

use super::policy::RunnerOptions;
use crate::error::{Error, db};
use crate::{Partition, PostgresEventStore};

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
    /// What it reads of the log.
    selection: Arc<Selection>,
    projections: String,
    dead_letters: String,
    events: String,
    /// See `session::begin_statement`.
    begin_statement: String,
    /// See `session::listener_pool`.
    listener_pool: Option<PgPool>,
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
        let selection = Selection::new(projector.event_types(), projector.reads_metadata());
        Self {
            projections: store.table("projections"),
            dead_letters: store.table("dead_letters"),
            events: store.table("events"),
            owner: format!("runner-{}", Uuid::now_v7()),
            name: projector.name().to_owned(),
            selection: Arc::new(selection),
            options: RunnerOptions::default(),
            begin_statement: session::begin_statement(&RunnerOptions::default()),
            listener_pool: session::listener_pool(store.database()),
            state: RunState::default(),
            store,
            projector,
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
        let selection = Selection::new(
            self.projector.event_types(),
            self.projector.reads_metadata(),
        );
        self.selection = Arc::new(selection.in_partition(partition));
        self
    }

    /// The partition it applies ([`Partition::whole`] unless set).
    pub fn partition(&self) -> Partition {
        self.selection.partition()
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
        let lease = acquired.map(|acquired| {
            let (projection, owner, token) = (self.name(), &self.owner, acquired.lease.token);
            match acquired.previous_owner.as_deref() {
                None => tracing::info!(projection, owner, token, "lease taken"),
                Some(previous) if previous == owner => {
                    tracing::info!(projection, owner, token, "lease taken back after it lapsed");
                }
                Some(previous) => tracing::info!(
                    projection,
                    owner,
                    token,
                    previous_owner = previous,
                    "lease taken over from another runner"
                ),
            }
            acquired.lease
        });
        *self.lease_slot() = lease;
        Ok(lease.is_some())
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
            tracing::info!(projection = self.name(), owner = %self.owner, "lease released");
        }
        Ok(())
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
}

impl<P: Projector<PgConnection> + ?Sized> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("owner", &self.owner)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
