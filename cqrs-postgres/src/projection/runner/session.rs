//! The sessions a runner opens: its transactions, bounded by the lease, and
//! its listener, on a connection of its own.

use cqrskit_core::{Position, Projector};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::ProjectionRunner;
use crate::database::Database;
use crate::error::{Error, db};
use crate::projection::policy::RunnerOptions;
use crate::row::LogRow;

/// The statement that opens a runner's transaction: the server ends the
/// session when the transaction idles, runs a statement or waits for a lock
/// longer than the bound (or than the session's own setting, when an
/// operator set a shorter one). A runner frozen (SIGSTOP), cut off or stuck
/// in a projector's external call thus gives up its row lock, and the
/// transaction id that holds back every reader of the log, within a third of
/// its lease, before another runner may take the lease over.
pub(super) fn begin_statement(options: &RunnerOptions) -> String {
    // The settings take milliseconds as a 32-bit integer.
    let bound = options
        .transaction_bound()
        .as_millis()
        .min(i32::MAX.unsigned_abs().into());
    // language=SQL
    format!(
        "BEGIN; SELECT set_config(name, least(nullif(setting::bigint, 0), {bound})::text, true) \
         FROM pg_settings \
         WHERE name IN ('idle_in_transaction_session_timeout', 'statement_timeout', 'lock_timeout')"
    )
}

/// A pool of one connection, opened when first used, for the listener: it
/// must not hold one of the connections the runner's transactions need
/// (with a pool of one, it would hold the only one). It connects where the
/// store's sessions go: `None` behind a transaction pooler without a direct
/// pool, where `LISTEN` would succeed and never deliver.
pub(super) fn listener_pool(database: &Database) -> Option<PgPool> {
    let pool = database.session_pool()?;
    Some(
        PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(pool.connect_options().as_ref().clone()),
    )
}

impl<P> ProjectionRunner<P>
where
    P: Projector<PgConnection> + ?Sized + 'static,
{
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        self.store
            .pool()
            .begin_with(self.begin_statement.clone())
            .await
            .map_err(db)
    }

    /// The batch after `after`, bounded by count and bytes.
    pub(super) async fn read_batch(
        &self,
        connection: &mut PgConnection,
        after: Position,
    ) -> Result<Vec<LogRow>, Error> {
        let (limit, max_bytes) = self.state.pace.limits(&self.options);
        Ok(self
            .store
            .reader()
            .read_log_rows_on(connection, after, self.selection.log_read(limit, max_bytes))
            .await?)
    }

    /// A listener on the store's channel, or `None` (then the runner polls).
    pub(crate) async fn listen(&self) -> Option<PgListener> {
        let Some(pool) = &self.listener_pool else {
            tracing::warn!(
                projection = self.name(),
                poll_interval = ?self.options.poll_interval,
                "behind a transaction pooler without a direct pool, LISTEN cannot work; polling instead"
            );
            return None;
        };
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(projection = self.name(), %error, "cannot LISTEN; polling instead");
                return None;
            }
        };
        match listener.listen(&self.store.notification_channel()).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(projection = self.name(), %error, "cannot LISTEN; polling instead");
                None
            }
        }
    }
}
