//! A projection remembers the event types it subscribes to, so that a
//! projector of another version never moves its checkpoint silently past
//! events it should have seen.
//!
//! During a rolling deploy, a new version of the application may already
//! write events of a new type while an old runner, whose projector does not
//! declare that type, still holds the lease: its log reads filter those
//! events out and its checkpoint passes them. When the new projector takes
//! over under the same name it would never see them. So every runner checks
//! its projector's types against the recorded ones before applying:
//!
//! - the same types: go on;
//! - new types of which the log holds no event before the checkpoint:
//!   nothing was skipped; record them and go on;
//! - new types with such events, or types the projection had and the
//!   projector dropped (an old version coming back, or a deliberate
//!   removal): refuse with [`Error::SubscriptionChanged`], until the
//!   projection is rebuilt or the change accepted.

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::ProjectionRunner;
use super::holder::Guarded;
use crate::error::{Error, db};
use crate::projection::projection_row::{self, Locked};

/// How the projector's types compare with the recorded subscription.
pub(super) enum Change {
    Same,
    /// Record the projector's types (none was recorded, or the new ones
    /// have no earlier events).
    Record,
    Refuse {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Compares the projector's types with the recorded ones (see the
    /// module docs), recording them when that is safe.
    pub(super) async fn check_subscription(
        &self,
        tx: &mut PgConnection,
        locked: &Locked,
    ) -> Result<(), Error> {
        match self.compare_subscription(tx, locked).await? {
            Change::Same => Ok(()),
            Change::Record => {
                if locked.event_types.is_none() && locked.checkpoint != Position::START {
                    tracing::warn!(
                        projection = self.name(),
                        types = ?self.selection.subscription(),
                        "the projection's event types were not recorded (written by an older version); recording them now"
                    );
                }
                self.record_subscription(tx).await
            }
            Change::Refuse { added, removed } => Err(Error::SubscriptionChanged {
                projection: self.name().to_owned(),
                added,
                removed,
            }),
        }
    }

    pub(super) async fn compare_subscription(
        &self,
        tx: &mut PgConnection,
        locked: &Locked,
    ) -> Result<Change, Error> {
        let Some(recorded) = &locked.event_types else {
            return Ok(Change::Record);
        };
        if *recorded == self.selection.subscription() {
            return Ok(Change::Same);
        }
        let removed: Vec<String> = recorded
            .iter()
            .filter(|recorded| !self.selection.subscription().contains(recorded))
            .cloned()
            .collect();
        let added: Vec<String> = self
            .selection
            .subscription()
            .iter()
            .filter(|wanted| !recorded.contains(wanted))
            .cloned()
            .collect();
        let skipped = if added.is_empty() {
            Vec::new()
        } else {
            self.types_before(tx, &added, locked.checkpoint).await?
        };
        if removed.is_empty() && skipped.is_empty() {
            return Ok(Change::Record);
        }
        Ok(Change::Refuse {
            added: skipped,
            removed,
        })
    }

    /// Which of `types` have events at or before `checkpoint`.
    async fn types_before(
        &self,
        tx: &mut PgConnection,
        types: &[String],
        checkpoint: Position,
    ) -> Result<Vec<String>, Error> {
        // language=SQL
        self.store
            .database()
            .query_scalar(&format!(
                "SELECT wanted.type_name FROM unnest($1::text[]) AS wanted(type_name)
             WHERE EXISTS (
                 SELECT 1 FROM {} e
                 WHERE e.event_type = wanted.type_name
                   AND (e.transaction_id, e.position) <= ($2::bigint::text::xid8, $3)
             )
             ORDER BY 1",
                self.events
            ))
            .bind(types)
            .bind(projection_row::as_i64(checkpoint.transaction))
            .bind(projection_row::as_i64(checkpoint.sequence))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)
    }

    /// Records the projector's types as the projection's subscription.
    pub(super) async fn record_subscription(&self, tx: &mut PgConnection) -> Result<(), Error> {
        self.row()
            .record_subscription(tx, self.selection.subscription())
            .await
            .map_err(db)
    }

    /// Records the projector's event types as the projection's subscription
    /// without replaying anything: for a change that needs no backfill (a
    /// type removed on purpose, or one whose earlier events the read model
    /// does not need). Events of added types before the checkpoint stay
    /// unapplied. Requires the lease.
    ///
    /// # Errors
    ///
    /// [`Error::NotLeaseholder`] without the lease; store failures.
    pub async fn accept_subscription(&self) -> Result<(), Error> {
        let Guarded { mut tx, .. } = self.holding().await?;
        self.record_subscription(&mut tx).await?;
        tracing::warn!(projection = self.name(), types = ?self.selection.subscription(), "subscription accepted without a rebuild");
        tx.commit().await.map_err(db)
    }
}
