//! A projection split into partitions, shared out among the instances that
//! run it, with PostgreSQL as the only coordinator.
//!
//! Each partition is a runner of its own (its slices, checkpoint, fenced
//! lease and dead letters). Each instance records itself in
//! `projection_instances` every third of the lease and counts the
//! instances seen within a lease; its target is an equal share of the
//! partitions, rounded up. Its runners take free leases while it holds
//! fewer than its target and give theirs up while it holds more, so a new
//! instance gets partitions within a third of a lease, and the partitions of
//! one that died or froze are taken over once its lease lapses.

use std::future::Future;
use std::sync::Arc;

use cqrskit_core::Projector;
use sqlx::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::layout;
use super::policy::RunnerOptions;
use super::runner::{ProjectionRunner, Share, Wake};
use crate::error::{Error, db};
use crate::{Partition, PostgresEventStore};

/// Runs the partitions of one projection that fall to this instance (see
/// the module docs).
pub struct PartitionedRunner<P: Projector<PgConnection> + ?Sized> {
    store: PostgresEventStore,
    projector: Arc<P>,
    projection: String,
    partitions: Vec<Partition>,
    owner: String,
    options: RunnerOptions,
    runners: Vec<Arc<ProjectionRunner<P>>>,
    share: Arc<Share>,
    instances: String,
    projections: String,
}

impl<P> PartitionedRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// `projector` split into `partitions` partitions, with default options
    /// and a fresh owner id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPartition`] unless `1 <= partitions <= SLICES`.
    pub fn new(
        store: PostgresEventStore,
        projector: Arc<P>,
        partitions: usize,
    ) -> Result<Self, Error> {
        let mut partitioned = Self {
            projection: projector.name().to_owned(),
            owner: format!("runner-{}", Uuid::now_v7()),
            options: RunnerOptions::default(),
            partitions: Partition::all(partitions)?,
            runners: Vec::new(),
            share: Arc::new(Share::default()),
            instances: store.table("projection_instances"),
            projections: store.table("projections"),
            projector,
            store,
        };
        partitioned.build();
        Ok(partitioned)
    }

    /// (Re)makes the partitions' runners with the current options and owner.
    fn build(&mut self) {
        self.runners = self
            .partitions
            .iter()
            .map(|&partition| {
                Arc::new(
                    ProjectionRunner::new(self.store.clone(), self.projector.clone())
                        .for_partition(partition)
                        .with_options(self.options.clone())
                        .with_owner(self.owner.clone()),
                )
            })
            .collect();
    }

    /// Replaces every partition's options.
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self.build();
        self
    }

    /// Names this instance (default: `runner-<uuid>`): the owner of the
    /// leases it holds and its row in `projection_instances`. Unique per
    /// instance.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self.build();
        self
    }

    /// The projector's name.
    pub fn name(&self) -> &str {
        &self.projection
    }

    /// This instance's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Every partition's runner, in partition order: its checkpoint, lag,
    /// lease holder and dead letters.
    pub fn partitions(&self) -> &[Arc<ProjectionRunner<P>>] {
        &self.runners
    }

    /// How many partitions this instance holds now.
    pub fn held(&self) -> usize {
        self.share.held()
    }

    /// Runs the projector's setup hook (once for all partitions).
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::setup`].
    pub async fn setup(&self) -> Result<(), Error> {
        for runner in &self.runners {
            runner.setup().await?;
        }
        Ok(())
    }

    /// Runs this instance's share of the partitions until `shutdown`
    /// completes, then gives every lease up and leaves, so the other
    /// instances take its partitions at once.
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::run`]: a partition stopped at a poison event
    /// or refusing a changed subscription stops the whole instance (the
    /// others' partitions go on).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        let (stop, stopped) = watch::channel(false);
        let (notify, notified) = watch::channel(());
        self.heartbeat().await;
        let mut workers = JoinSet::new();
        for runner in &self.runners {
            let (runner, share) = (runner.clone(), self.share.clone());
            let (mut stopped, notified) = (stopped.clone(), notified.clone());
            workers.spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                runner
                    .run_sharing(stop, Some(&share), Wake::Shared(notified))
                    .await
            });
        }
        let mut listener = self.runners[0].listen().await;
        // An interval, not a sleep per turn: notifications, which end a turn,
        // must not put the heartbeat off.
        let mut beat = tokio::time::interval(
            (self.options.lease_duration / 3).max(std::time::Duration::from_millis(10)),
        );
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        let mut failure = None;
        loop {
            let notification = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.as_mut() => break,
                finished = workers.join_next() => {
                    failure = match finished {
                        Some(Ok(Err(error))) => Some(error),
                        Some(Err(panic)) => Some(Error::PartitionFailed {
                            projection: self.projection.clone(),
                            reason: panic.to_string(),
                        }),
                        _ => None,
                    };
                    break;
                }
                received = notification => match received {
                    Ok(()) => notify.send_replace(()),
                    Err(error) => {
                        tracing::warn!(projection = %self.projection, %error, "LISTEN connection failed; polling");
                        listener = None;
                    }
                },
                _ = beat.tick() => {
                    self.heartbeat().await;
                    if listener.is_none() {
                        listener = self.runners[0].listen().await;
                    }
                }
            }
        }
        let _ = stop.send(true);
        while let Some(finished) = workers.join_next().await {
            if let (Ok(Err(error)), None) = (finished, &failure) {
                failure = Some(error);
            }
        }
        self.leave().await;
        failure.map_or(Ok(()), Err)
    }

    /// Records this instance as alive, and sets its share to an equal part
    /// of the partitions among the instances seen within a lease.
    async fn heartbeat(&self) {
        let lease = self.options.lease_duration.as_secs_f64();
        let database = self.store.database();
        // language=SQL
        let counted: Result<i64, _> = async {
            let mut session = database.session().await?;
            let others = database
                .query_scalar(&format!(
                    "WITH seen AS (
                         INSERT INTO {instances} (projection, owner) VALUES ($1, $2)
                         ON CONFLICT (projection, owner) DO UPDATE SET seen_at = now()
                     ), gone AS (
                         DELETE FROM {instances}
                         WHERE projection = $1 AND seen_at < now() - make_interval(secs => $3 * 3)
                     )
                     SELECT count(*) FROM {instances}
                     WHERE projection = $1 AND owner <> $2
                       AND seen_at > now() - make_interval(secs => $3)",
                    instances = self.instances
                ))
                .bind(&self.projection)
                .bind(&self.owner)
                .bind(lease)
                .fetch_one(&mut *session)
                .await?;
            session.finish().await?;
            Ok::<_, sqlx::Error>(others)
        }
        .await;
        match counted {
            Ok(others) => {
                let instances = usize::try_from(others).unwrap_or(0) + 1;
                let target = self.runners.len().div_ceil(instances);
                let before = self.share.set_target(target);
                if before != target {
                    tracing::info!(
                        projection = %self.projection,
                        owner = %self.owner,
                        instances,
                        partitions = self.runners.len(),
                        share = target,
                        share_before = before,
                        "instances joined or left: this instance's share of the partitions changes"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(projection = %self.projection, %error, "cannot record this instance; keeping its share");
            }
        }
    }

    /// Removes this instance's row, so the others count it gone at once.
    async fn leave(&self) {
        let database = self.store.database();
        // language=SQL
        let left = async {
            let mut session = database.session().await?;
            database
                .query(&format!(
                    "DELETE FROM {} WHERE projection = $1 AND owner = $2",
                    self.instances
                ))
                .bind(&self.projection)
                .bind(&self.owner)
                .execute(&mut *session)
                .await?;
            session.finish().await
        }
        .await;
        if let Err(error) = left {
            tracing::warn!(projection = %self.projection, %error, "cannot remove this instance's row; it lapses");
        }
    }

    /// Starts this split of the projection where a coarser split `from`
    /// ways (1: the unpartitioned projection) stands: each partition takes
    /// the checkpoint of the partition it was split off, so nothing is
    /// applied twice or skipped. Run it with every instance stopped, before
    /// the new split first runs. The projection's recorded layout moves to
    /// the new count, so runners of the old split refuse to start
    /// ([`Error::PartitionsDisagree`]), and the old rows are fenced (a
    /// runner of the old split that froze holding one cannot apply another
    /// batch); they stay for the record.
    ///
    /// # Errors
    ///
    /// [`Error::Rescale`] when the count is not a multiple of `from`,
    /// the projection's recorded layout is not `from`, a partition of the
    /// old split is still leased, or the new split has started already;
    /// store failures.
    pub async fn split_from(&self, from: usize) -> Result<(), Error> {
        let refuse = |reason: String| Error::Rescale {
            projection: self.projection.clone(),
            reason,
        };
        let to = self.runners.len();
        if from == 0 || to % from != 0 {
            return Err(refuse(format!(
                "{to} partitions are not a split of {from}: only splits into a multiple are safe (merging needs a rebuild)"
            )));
        }
        let old = Partition::all(from).map_err(|error| refuse(error.to_string()))?;
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        let moved = layout::move_to(
            self.store.database(),
            &mut tx,
            &self.store.table("projection_layouts"),
            &self.projection,
            u16::try_from(from).unwrap_or(u16::MAX),
            u16::try_from(to).unwrap_or(u16::MAX),
        )
        .await
        .map_err(db)?;
        if !moved {
            return Err(refuse(format!(
                "its recorded layout is not {from} partition(s) (see projection_layouts)"
            )));
        }
        let old_rows: Vec<String> = old
            .iter()
            .map(|parent| parent.row_name(&self.projection))
            .collect();
        // The old rows, locked: a batch of an old runner commits before the
        // copy or not at all (its transaction locks its row too).
        // language=SQL
        sqlx::query(&format!(
            "SELECT name FROM {} WHERE name = ANY($1) FOR UPDATE",
            self.projections
        ))
        .bind(&old_rows)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Their open dead letters would be left behind, and the streams
        // they hold (OnExhausted::ParkStream) let go.
        // language=SQL
        let open: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE projection = ANY($1) AND resolved_at IS NULL",
            self.store.table("dead_letters")
        ))
        .bind(&old_rows)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if open > 0 {
            return Err(refuse(format!(
                "the old split has {open} open dead letter(s): replay or skip them first"
            )));
        }
        for runner in &self.runners {
            let partition = runner.partition();
            let Some(parent) = old.iter().find(|parent| partition.within(parent)) else {
                return Err(refuse(format!(
                    "partition {partition:?} lies in no old one"
                )));
            };
            // language=SQL
            let copied = sqlx::query(&format!(
                "INSERT INTO {table} (name, checkpoint_transaction, checkpoint_sequence, event_types)
                 SELECT $1, checkpoint_transaction, checkpoint_sequence, event_types
                 FROM {table} WHERE name = $2
                   AND (owner IS NULL OR lease_expires_at < now())
                 ON CONFLICT (name) DO NOTHING",
                table = self.projections
            ))
            .bind(runner.name())
            .bind(parent.row_name(&self.projection))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if copied.rows_affected() != 1 {
                return Err(refuse(format!(
                    "`{}` could not start from `{}`: it exists already, or `{}` is missing or leased",
                    runner.name(),
                    parent.row_name(&self.projection),
                    parent.row_name(&self.projection)
                )));
            }
        }
        // Fenced, and stopped for good: a runner of the old split that
        // takes one of these rows again is refused at its next batch.
        // language=SQL
        sqlx::query(&format!(
            "UPDATE {} SET owner = NULL, lease_expires_at = NULL,
                 fencing_token = fencing_token + 1, updated_at = now(),
                 stopped_at = now(), stop_reason = $2
             WHERE name = ANY($1)",
            self.projections
        ))
        .bind(&old_rows)
        .bind(format!(
            "split into {to} partitions (PartitionedRunner::split_from): this row is kept for the record"
        ))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
