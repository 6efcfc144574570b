//! The loop that keeps a projection up to date: take the lease, catch up,
//! wait for appends; for a partition, only while the instance's share of
//! the partitions allows.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cqrskit_core::Projector;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::{ProjectionRunner, horizon, lease_wait};
use crate::error::{Error, db};

/// How many partitions an instance holds and may hold: its runners take a
/// lease only while below the target, and give one up while above it.
#[derive(Debug, Default)]
pub(crate) struct Share {
    held: AtomicUsize,
    target: AtomicUsize,
}

impl Share {
    /// Sets how many partitions this instance may hold; the one before.
    pub(crate) fn set_target(&self, target: usize) -> usize {
        self.target.swap(target, Ordering::SeqCst)
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Counts one more partition held if that stays within the target.
    fn reserve(&self) -> bool {
        let target = self.target.load(Ordering::SeqCst);
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                (held < target).then_some(held + 1)
            })
            .is_ok()
    }

    /// Counts one partition fewer.
    fn unreserve(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_sub(1)
            });
    }

    /// Counts one partition fewer if more are held than the target: the
    /// caller then gives its partition up.
    fn over(&self) -> bool {
        let target = self.target.load(Ordering::SeqCst);
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                (held > target).then(|| held - 1)
            })
            .is_ok()
    }
}

/// The most events the lag gauge counts: past it, the gauge says "at least
/// this many" rather than have a far-behind projection count millions of
/// rows every few seconds.
pub(crate) const LAG_EVENTS_CAP: i64 = 1_000_000;

/// What wakes a waiting runner besides its poll interval.
pub(crate) enum Wake {
    /// A `LISTEN` connection of its own (reopened when it fails), or none
    /// (behind a transaction pooler).
    Listener(Option<PgListener>),
    /// A notification shared by the runners of one instance.
    Shared(watch::Receiver<()>),
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Runs until `shutdown` completes: takes the lease (waiting while another
    /// runner holds it), catches up, then waits for appends, woken by
    /// `LISTEN`/`NOTIFY` and, in case a notification is lost or `LISTEN` is
    /// unavailable (behind a transaction-pooling proxy), by polling every
    /// [`poll_interval`](crate::RunnerOptions::poll_interval). Renews the
    /// lease while it works and releases it on shutdown.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] / [`Error::StillStopped`] when the
    /// projection is stopped at a poison event;
    /// [`Error::SubscriptionChanged`] when the projector's event types
    /// do not match the projection's (a new version that needs a rebuild);
    /// [`Error::PartitionsDisagree`] when the projection runs in
    /// another number of partitions than this runner's.
    /// Unreachable databases and lost leases are waited out, not returned.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let listener = self.listen().await;
        self.run_sharing(shutdown, None, Wake::Listener(listener))
            .await
    }

    /// [`run`](Self::run), taking the lease only while `share` allows it
    /// and giving it up when the share shrinks (a partition), woken by
    /// `wake`.
    pub(crate) async fn run_sharing(
        &self,
        shutdown: impl Future<Output = ()>,
        share: Option<&Share>,
        wake: Wake,
    ) -> Result<(), Error> {
        // The lag in events is counted beside the loop, so a long catch-up
        // (which does not come back to the loop until it is done) still
        // reports it.
        tokio::select! {
            result = self.run_loop(shutdown, share, wake) => result,
            never = self.report_lag_events() => match never {},
        }
    }

    /// Every idle interval while this runner holds the lease: the events it
    /// has still to apply, counted up to [`LAG_EVENTS_CAP`], as the
    /// projection's lag gauge in events.
    async fn report_lag_events(&self) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(self.idle()).await;
            if self.lease_slot().is_none() {
                continue;
            }
            let counted = async {
                let after = self.checkpoint().await?;
                let database = self.store.database();
                let mut session = database.session().await.map_err(db)?;
                let pending = self
                    .pending(&mut session, after, Some(LAG_EVENTS_CAP))
                    .await?;
                session.finish().await.map_err(db)?;
                Ok::<_, Error>(pending.events)
            };
            if let Ok(events) = counted.await {
                metrics::gauge!(crate::telemetry::PROJECTION_LAG_EVENTS, "projection" => self.name().to_owned())
                    .set(events as f64);
            }
        }
    }

    /// How long the loop waits between polls when nothing wakes it.
    fn idle(&self) -> Duration {
        self.options
            .poll_interval
            .min(self.options.lease_duration / 3)
            .max(Duration::from_millis(10))
    }

    async fn run_loop(
        &self,
        shutdown: impl Future<Output = ()>,
        share: Option<&Share>,
        mut wake: Wake,
    ) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        let idle = self.idle();
        let mut horizon_pause = horizon::FIRST_PAUSE;
        let mut waiting_for = lease_wait::WaitingFor::default();
        let mut held_back = horizon::HeldBack::default();
        // Operator requests are looked for at most once per idle interval.
        let mut requests_checked: Option<tokio::time::Instant> = None;
        loop {
            let mut holds = self.lease_slot().is_some();
            if holds && share.is_some_and(Share::over) {
                tracing::info!(projection = self.name(), owner = %self.owner, "giving the partition up to a new instance");
                if let Err(error) = self.release_lease().await {
                    tracing::warn!(projection = self.name(), %error, "cannot release the lease; it lapses");
                }
                self.lease_slot().take();
                holds = false;
            } else if !holds && share.is_none_or(Share::reserve) {
                holds = match self.acquire_lease().await {
                    Ok(holds) => holds,
                    // A configuration to fix, not an outage to wait out.
                    Err(
                        error @ (Error::PartitionsDisagree { .. } | Error::Misconfigured { .. }),
                    ) => {
                        if let Some(share) = share {
                            share.unreserve();
                        }
                        // Returned, not logged (see `failure.rs`).
                        return Err(error);
                    }
                    Err(error) => {
                        tracing::warn!(projection = self.name(), owner = %self.owner, %error, "cannot take the lease; retrying");
                        false
                    }
                };
                if !holds {
                    if let Some(share) = share {
                        share.unreserve();
                    } else {
                        waiting_for.report(self).await;
                    }
                }
            }
            metrics::gauge!(crate::telemetry::PROJECTION_LEASE_HELD, "projection" => self.name().to_owned())
                .set(if holds { 1.0 } else { 0.0 });
            if holds && requests_checked.is_none_or(|checked| checked.elapsed() >= idle) {
                requests_checked = Some(tokio::time::Instant::now());
                match self.carry_out_requests().await {
                    // Found out again by the batch below, and logged there.
                    Ok(_) | Err(Error::NotLeaseholder { .. }) => {}
                    Err(error) => {
                        tracing::warn!(projection = self.name(), owner = %self.owner, %error, "cannot carry out the operator's request; retrying");
                    }
                }
            }
            let outcome = if holds {
                self.catch_up().await.map(|_| ())
            } else {
                Ok(())
            };
            let mut wait = idle;
            match outcome {
                Ok(()) if holds => {
                    // The notification that woke us is spent; events still
                    // behind the horizon would send none when it moves.
                    if self.events_pending().await.unwrap_or(false) {
                        wait = horizon_pause.min(idle);
                        horizon_pause = (horizon_pause * 2).min(horizon::MAX_PAUSE);
                        held_back.still(self).await;
                    } else {
                        horizon_pause = horizon::FIRST_PAUSE;
                        held_back.over();
                        metrics::gauge!(crate::telemetry::PROJECTION_LAG, "projection" => self.name().to_owned())
                            .set(0.0);
                        metrics::gauge!(crate::telemetry::PROJECTION_LAG_EVENTS, "projection" => self.name().to_owned())
                            .set(0.0);
                    }
                }
                Ok(()) => {}
                Err(
                    error @ (Error::Stopped { .. }
                    | Error::StillStopped { .. }
                    | Error::SubscriptionChanged { .. }
                    | Error::PartitionsDisagree { .. }
                    | Error::Misconfigured { .. }),
                ) => {
                    if let Err(release) = self.release_lease().await {
                        tracing::warn!(projection = self.name(), owner = %self.owner, error = %release, "cannot release the lease; it lapses");
                    }
                    if let Some(share) = share {
                        share.unreserve();
                    }
                    return Err(error);
                }
                Err(Error::NotLeaseholder { .. }) => {
                    let holder = self.lease_holder().await.ok().flatten();
                    tracing::warn!(
                        projection = self.name(),
                        owner = %self.owner,
                        holder = holder.as_ref().map_or("nobody", |holder| holder.owner.as_str()),
                        "lease lost (it lapsed, or another runner took it over); waiting to take it back"
                    );
                    self.lease_slot().take();
                    if let Some(share) = share {
                        share.unreserve();
                    }
                }
                Err(error) => {
                    tracing::warn!(projection = self.name(), owner = %self.owner, %error, "projection runner failed; retrying");
                }
            }
            if !self.wait(&mut shutdown, &mut wake, wait).await {
                break;
            }
        }
        let held = self.lease_slot().is_some();
        let released = self.release_lease().await;
        metrics::gauge!(crate::telemetry::PROJECTION_LEASE_HELD, "projection" => self.name().to_owned())
            .set(0.0);
        if let (true, Some(share)) = (held, share) {
            share.unreserve();
        }
        released
    }

    /// Waits for a notification, at most `wait`; `false` when `shutdown`
    /// completed.
    async fn wait(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        wake: &mut Wake,
        wait: Duration,
    ) -> bool {
        let notified = async {
            match wake {
                Wake::Listener(Some(listener)) => {
                    if let Err(error) = listener.recv().await {
                        tracing::warn!(projection = self.name(), %error, "LISTEN connection failed; polling");
                        *wake = Wake::Listener(None);
                    }
                }
                Wake::Listener(None) => std::future::pending().await,
                Wake::Shared(receiver) => {
                    if receiver.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = shutdown.as_mut() => false,
            () = notified => true,
            () = tokio::time::sleep(wait) => {
                if matches!(wake, Wake::Listener(None)) && self.listener_pool.is_some() {
                    *wake = Wake::Listener(self.listen().await);
                }
                true
            }
        }
    }
}
