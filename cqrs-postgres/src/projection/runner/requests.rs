//! Requests an operator recorded on the projection's row (`cqrs-admin
//! rebuild`, `cqrs-admin dead-letters replay`): the projector's code lives
//! in the application, so the runner holding the lease carries them out.

use cqrskit_core::Projector;
use sqlx::PgConnection;

use super::ProjectionRunner;
use crate::error::{Error, db};

/// What an operator can ask of a running projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Clear the read model and replay the log ([`ProjectionRunner::rebuild`]).
    Rebuild,
    /// Try the open dead letters again
    /// ([`ProjectionRunner::replay_dead_letters`]).
    ReplayDeadLetters,
}

impl Request {
    /// The value stored in `projections.requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rebuild => "rebuild",
            Self::ReplayDeadLetters => "replay-dead-letters",
        }
    }

    /// The request stored as `value`, if it is one.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "rebuild" => Some(Self::Rebuild),
            "replay-dead-letters" => Some(Self::ReplayDeadLetters),
            _ => None,
        }
    }
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    /// Carries out the request recorded for this projection, if there is
    /// one, and clears it: a rebuild clears it in the rebuild's own
    /// transaction, a replay once every open dead letter was tried. A
    /// running runner calls this every poll interval; call it yourself
    /// when you drive [`catch_up`](Self::catch_up) by hand. Requires the
    /// lease.
    ///
    /// # Errors
    ///
    /// As [`rebuild`](Self::rebuild) and
    /// [`replay_dead_letters`](Self::replay_dead_letters); the request then
    /// stays, to be tried again, with the error and the count of failed
    /// attempts recorded on the projection's row
    /// ([`ProjectionInfo::request_error`](crate::admin::ProjectionInfo::request_error)).
    pub async fn carry_out_requests(&self) -> Result<Option<Request>, Error> {
        let Some(request) = self
            .row()
            .requested()
            .await
            .map_err(db)?
            .as_deref()
            .and_then(Request::parse)
        else {
            return Ok(None);
        };
        tracing::info!(
            projection = self.name(),
            request = request.as_str(),
            "carrying out an operator's request"
        );
        let outcome = match request {
            Request::Rebuild => {
                let rebuilt = self.rebuild().await;
                if rebuilt.is_ok() {
                    tracing::info!(projection = self.name(), owner = %self.owner, "read model reset and checkpoint back at the start; replaying the log");
                }
                rebuilt
            }
            Request::ReplayDeadLetters => {
                async {
                    let replayed = self.replay_dead_letters().await?;
                    tracing::info!(
                        projection = self.name(),
                        owner = %self.owner,
                        resolved = replayed.resolved,
                        still_failing = replayed.still_failing,
                        "dead letters replayed"
                    );
                    let database = self.store.database();
                    let mut session = database.session().await.map_err(db)?;
                    self.clear_request(&mut session, request).await?;
                    session.finish().await.map_err(db)
                }
                .await
            }
        };
        if let Err(error) = &outcome {
            self.record_request_failure(request, error).await;
        }
        outcome.map(|()| Some(request))
    }

    /// Records on the projection's row why `request` failed, for the
    /// operator who made it (`cqrs-admin` shows it). Best effort: the
    /// failure itself is what the caller reports.
    async fn record_request_failure(&self, request: Request, error: &Error) {
        let recorded = self
            .row()
            .record_request_failure(request.as_str(), &error.to_string())
            .await;
        if let Err(record_error) = recorded {
            tracing::warn!(projection = self.name(), %record_error, "cannot record why the request failed");
        }
    }

    /// Clears `request` if it is still the one recorded.
    pub(super) async fn clear_request(
        &self,
        connection: &mut PgConnection,
        request: Request,
    ) -> Result<(), Error> {
        self.row()
            .clear_request(connection, request.as_str())
            .await
            .map_err(db)
    }
}
