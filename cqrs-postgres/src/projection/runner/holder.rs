//! Proving, in every transaction, that this runner holds the lease: the
//! projection's row locked, owner and fencing token checked, the checkpoint
//! moved by compare-and-set.

use std::sync::PoisonError;

use cqrskit_core::{Position, Projector};
use sqlx::{PgConnection, Postgres, Transaction};

use super::ProjectionRunner;
use super::apply::roll_back;
use crate::error::{Error, db};
use crate::projection::projection_row::{Lease, Locked};

/// A transaction in which this runner holds the projection: its lease
/// renewed when half gone, its row locked, owner and fencing token checked.
/// What every write of the runner starts with.
pub(super) struct Guarded {
    /// The transaction, holding the row lock until it ends.
    pub(super) tx: Transaction<'static, Postgres>,
    /// The lease it holds the row under (its token moves the checkpoint).
    pub(super) held: Lease,
    /// The row as locked.
    pub(super) locked: Locked,
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Opens a [`Guarded`] transaction, refusing a stopped projection and
    /// one whose subscription the projector would break (see
    /// [`guard`](Self::guard)).
    pub(super) async fn guarded(&self) -> Result<Guarded, Error> {
        let held = self.renewed_lease().await?;
        let mut tx = self.begin().await?;
        let locked = self.guard(&mut tx, held).await?;
        Ok(Guarded { tx, held, locked })
    }

    /// [`guarded`](Self::guarded), if the checkpoint is still at `at`;
    /// `None`, rolled back, when another runner moved it meanwhile.
    pub(super) async fn guarded_at(&self, at: Position) -> Result<Option<Guarded>, Error> {
        let guarded = self.guarded().await?;
        if guarded.locked.checkpoint == at {
            Ok(Some(guarded))
        } else {
            roll_back(guarded.tx).await;
            Ok(None)
        }
    }

    /// A [`Guarded`] transaction that only proves the lease: for what a
    /// stopped projection, or one whose subscription changed, still does (a
    /// rebuild, accepting the subscription).
    pub(super) async fn holding(&self) -> Result<Guarded, Error> {
        let held = self.renewed_lease().await?;
        let mut tx = self.begin().await?;
        let locked = self.lock_as_holder(&mut tx, held).await?;
        Ok(Guarded { tx, held, locked })
    }

    pub(super) fn lease_slot(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        // Only ever set or taken whole: a panic cannot leave it half-written.
        self.state
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn not_leaseholder(&self) -> Error {
        Error::NotLeaseholder {
            projection: self.name().to_owned(),
            owner: self.owner.clone(),
        }
    }

    /// The lease, renewed when less than half of it is left.
    pub(super) async fn renewed_lease(&self) -> Result<Lease, Error> {
        let held = (*self.lease_slot()).ok_or_else(|| self.not_leaseholder())?;
        if std::time::Instant::now() < held.renew_after {
            return Ok(held);
        }
        let renewed = self
            .row()
            .renew(&self.owner, held.token, self.options.lease_duration)
            .await
            .map_err(db)?;
        *self.lease_slot() = renewed;
        renewed.ok_or_else(|| self.not_leaseholder())
    }

    /// Locks the projection's row and checks that this runner holds the lease.
    pub(super) async fn lock_as_holder(
        &self,
        tx: &mut PgConnection,
        held: Lease,
    ) -> Result<Locked, Error> {
        let locked = self
            .row()
            .lock(tx)
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

    /// [`lock_as_holder`](Self::lock_as_holder), refusing a stopped projection
    /// and one whose subscription the projector would break.
    pub(super) async fn guard(&self, tx: &mut PgConnection, held: Lease) -> Result<Locked, Error> {
        let locked = self.lock_as_holder(tx, held).await?;
        if let Some(reason) = &locked.stop_reason {
            return Err(Error::StillStopped {
                projection: self.name().to_owned(),
                reason: reason.clone(),
            });
        }
        self.check_subscription(tx, &locked).await?;
        Ok(locked)
    }

    pub(super) async fn advance(
        &self,
        tx: &mut PgConnection,
        from: Position,
        to: Position,
        held: Lease,
    ) -> Result<(), Error> {
        let moved = self
            .row()
            .advance(tx, from, to, held.token)
            .await
            .map_err(db)?;
        if moved {
            Ok(())
        } else {
            Err(self.not_leaseholder())
        }
    }
}
