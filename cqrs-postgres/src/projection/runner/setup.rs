//! The projector's setup hook: its read model's tables come into being with
//! the projection, before the first batch, in a transaction that holds the
//! projection's row (so two runners never run `CREATE TABLE` at once, which
//! PostgreSQL does not make safe even with `IF NOT EXISTS`).

use std::sync::atomic::Ordering;

use cqrskit_core::Projector;
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::{Error, db};
use crate::projection::layout;
use crate::projection::policy::OnExhausted;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Runs the projector's [`setup`](Projector::setup) hook now, creating
    /// the projection's row if needed. Runners do it by themselves before
    /// their first batch; call it to have the read model's tables before the
    /// runner starts (an application that serves reads at once, a test).
    /// Needs no lease: it waits while a holder is applying a batch.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] when the hook fails (nothing is kept);
    /// [`Error::PartitionsDisagree`] when the projection runs in
    /// another number of partitions; store failures.
    pub async fn setup(&self) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        self.claim_layout(&mut tx).await?;
        self.row().ensure(&mut tx).await.map_err(db)?;
        self.row().lock(&mut tx).await.map_err(db)?;
        self.run_setup(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        self.state.set_up.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The projector's hook on `tx`, its failure named. The partitions of
    /// one projection hold rows of their own: a lock on the projector's
    /// name keeps their setups from running at once.
    pub(super) async fn run_setup(&self, tx: &mut PgConnection) -> Result<(), Error> {
        // language=SQL
        self.store
            .database()
            .query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{}.{}", self.projections, self.projector.name()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        self.projector
            .setup(tx)
            .await
            .map_err(|source| Error::Setup {
                projection: self.name().to_owned(),
                source,
            })
    }

    /// Records this runner's partition count as the projection's layout
    /// unless one is recorded, and refuses another.
    pub(super) async fn claim_layout(&self, tx: &mut PgConnection) -> Result<(), Error> {
        if let Some(misfit) = self.misfit() {
            return Err(misfit);
        }
        let configured = self.selection.partition().count();
        let recorded = layout::claim(
            self.store.database(),
            tx,
            &self.store.table("projection_layouts"),
            self.projector.name(),
            u16::try_from(configured).unwrap_or(u16::MAX),
        )
        .await
        .map_err(db)?;
        if usize::from(recorded) == configured {
            return Ok(());
        }
        Err(Error::PartitionsDisagree {
            projection: self.projector.name().to_owned(),
            recorded: recorded.into(),
            configured,
        })
    }

    /// Why the projector cannot run under this runner's configuration, if
    /// it cannot: one that refuses partitions, run in partitions; one that
    /// requires log order, run in partitions or parking its events.
    fn misfit(&self) -> Option<Error> {
        let partitioned = !self.selection.partition().is_whole();
        if let Some(refusal) = self.projector.partition_refusal().filter(|_| partitioned) {
            return Some(Error::Misconfigured {
                projection: self.projector.name().to_owned(),
                reason: refusal.to_owned(),
            });
        }
        if !self.projector.requires_log_order() {
            return None;
        }
        let reason = if partitioned {
            "it requires every event in log order, through one runner: run it unpartitioned"
        } else if self.options.failure.on_exhausted != OnExhausted::Stop {
            "it requires every event in log order: an event it parked and replayed later would \
             be out of order or lost; run it with OnExhausted::Stop"
        } else {
            return None;
        };
        Some(Error::Misconfigured {
            projection: self.projector.name().to_owned(),
            reason: reason.to_owned(),
        })
    }

    /// [`claim_layout`](Self::claim_layout) on a connection of its own.
    pub(super) async fn check_layout(&self) -> Result<(), Error> {
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        self.claim_layout(&mut session).await?;
        session.finish().await.map_err(db)
    }

    /// [`setup`](Self::setup), the first time only.
    pub(super) async fn set_up_once(&self) -> Result<(), Error> {
        if self.state.set_up.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.setup().await
    }
}
