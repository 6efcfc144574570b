//! Requests an operator recorded on the projection's row (`cqrs-admin
//! rebuild`, `cqrs-admin dead-letters replay`): the projector's code lives
//! in the application, so the runner holding the lease carries them out.

use cqrskit_core::Projector;
use sqlx::{PgConnection, Row};

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
        let database = self.store.database();
        let mut session = database.session().await.map_err(db)?;
        // language=SQL
        let row = database
            .query(&format!(
                "SELECT requested FROM {} WHERE name = $1",
                self.projections
            ))
            .bind(self.name())
            .fetch_optional(&mut *session)
            .await
            .map_err(db)?;
        session.finish().await.map_err(db)?;
        let Some(request) = row
            .and_then(|row| row.get::<Option<String>, _>("requested"))
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
            Request::Rebuild => self.rebuild().await,
            Request::ReplayDeadLetters => {
                async {
                    self.replay_dead_letters().await?;
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
        let database = self.store.database();
        // language=SQL
        let sql = format!(
            "UPDATE {} SET request_error = $3, request_failures = request_failures + 1
             WHERE name = $1 AND requested = $2",
            self.projections
        );
        let recorded = async {
            let mut session = database.session().await?;
            database
                .query(&sql)
                .bind(self.name())
                .bind(request.as_str())
                .bind(error.to_string())
                .execute(&mut *session)
                .await?;
            session.finish().await
        }
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
        // language=SQL
        self.store
            .database()
            .query(&format!(
                "UPDATE {} SET requested = NULL, requested_at = NULL,
                               request_error = NULL, request_failures = 0
                 WHERE name = $1 AND requested = $2",
                self.projections
            ))
            .bind(self.name())
            .bind(request.as_str())
            .execute(connection)
            .await
            .map_err(db)?;
        Ok(())
    }
}
