//! How far a projection is behind: its checkpoint, and the events of its
//! types (and slices) after it.

use std::time::Duration;

use cqrskit_core::{Position, Projector};
use sqlx::PgConnection;

use super::{ProjectionRunner, subscription};
use crate::error::{Error, db};
use crate::projection::pending::{self, Pending};

/// How far a projection is behind the head of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Lag {
    /// The projection's checkpoint.
    pub checkpoint: Position,
    /// Events of its types after the checkpoint.
    pub events: u64,
    /// How long ago the oldest of them was recorded (zero when caught up).
    pub behind: Duration,
    /// Whether the projector's event types differ from the projection's
    /// recorded subscription in a way a runner refuses (see
    /// [`Error::SubscriptionChanged`]): the projection needs a rebuild
    /// (or the change accepted) before it moves again.
    pub needs_rebuild: bool,
    /// When events wait: the oldest append still in flight in the schema,
    /// which readers cannot pass until it ends (see
    /// [`PostgresEventStore::oldest_open_append`](crate::PostgresEventStore::oldest_open_append)).
    pub held_back_by: Option<crate::OldestAppend>,
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// The committed checkpoint.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn checkpoint(&self) -> Result<Position, Error> {
        self.row().read().await.map_err(db)
    }

    /// How far behind the head of the log the projection is.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn lag(&self) -> Result<Lag, Error> {
        let checkpoint = self.checkpoint().await?;
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        let pending = self.pending(&mut session, checkpoint, None).await?;
        let needs_rebuild = match self.row().peek(&mut session).await.map_err(db)? {
            Some(row) => matches!(
                self.compare_subscription(&mut session, &row).await?,
                subscription::Change::Refuse { .. }
            ),
            None => false,
        };
        session.finish().await.map_err(db)?;
        let held_back_by = if pending.events > 0 {
            self.store.oldest_open_append().await?
        } else {
            None
        };
        Ok(Lag {
            checkpoint,
            events: pending.events,
            behind: Duration::from_secs_f64(pending.behind.unwrap_or(0.0).max(0.0)),
            needs_rebuild,
            held_back_by,
        })
    }

    /// The events of its types and slices after `after`, counted up to
    /// `cap`.
    pub(super) async fn pending(
        &self,
        connection: &mut PgConnection,
        after: Position,
        cap: Option<i64>,
    ) -> Result<Pending, Error> {
        pending::count(
            self.store.database(),
            connection,
            &self.events,
            after,
            self.selection.reads(),
            cap,
        )
        .await
        .map_err(db)
    }
}
