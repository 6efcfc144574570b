//! A runner that cannot take the lease says so: who holds it and until
//! when, so a wait behind a crashed process's lease is never silent.

use std::time::{Duration, Instant};

use cqrskit_core::Projector;
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::{Error, db};
use crate::projection::projection_row::LeaseHolder;

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Who holds the projection's lease now, if anyone does (this runner
    /// included).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn lease_holder(&self) -> Result<Option<LeaseHolder>, Error> {
        self.row().holder().await.map_err(db)
    }
}

/// What a runner that cannot take the lease last said about it: it says who
/// holds it and until when once per holder, and again every
/// [`REPEAT_WAIT_REPORT`] while it keeps waiting.
#[derive(Default)]
pub(super) struct WaitingFor {
    last: Option<(String, Instant)>,
}

const REPEAT_WAIT_REPORT: Duration = Duration::from_secs(60);

impl WaitingFor {
    pub(super) async fn report<P>(&mut self, runner: &ProjectionRunner<P>)
    where
        P: Projector<PgConnection> + ?Sized + 'static,
    {
        let Ok(Some(holder)) = runner.lease_holder().await else {
            return;
        };
        let repeat = match &self.last {
            Some((owner, at)) => *owner != holder.owner || at.elapsed() >= REPEAT_WAIT_REPORT,
            None => true,
        };
        if repeat {
            tracing::info!(
                projection = runner.name(),
                owner = %runner.owner,
                holder = %holder.owner,
                expires_at = %holder.expires_at,
                "another runner holds the lease; waiting for it to be released or to lapse"
            );
            self.last = Some((holder.owner, Instant::now()));
        }
    }
}
