//! The way to the database: straight to PostgreSQL, or through a pooler in
//! transaction mode (PgBouncer, and what managed offerings put in front of
//! PostgreSQL), which hands a server connection to a client only for the
//! length of a transaction.
//!
//! sqlx prepares a statement in one exchange (Parse, Sync) and runs it in the
//! next (Bind, Execute, Sync). Outside a transaction a transaction pooler may
//! give the two exchanges to different server connections, and sqlx names
//! the statements it caches (`sqlx_s_1`, ...) per client, so clients collide
//! on names: "prepared statement already exists", "does not exist", and
//! worse, one client's Bind running another client's statement. Measured
//! through PgBouncer 1.18: only unnamed statements inside an explicit
//! transaction survive (0 failures in 2,400 operations, against 300 to 390
//! failures in 400 for every other combination). So behind such a pooler
//! every statement is unnamed, and one that would run on its own runs in a
//! transaction of its own. What needs the session itself (`LISTEN`, the
//! migrator's advisory lock) goes through a direct pool, when one is given.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::{Query, QueryScalar};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// How the store reaches PostgreSQL.
#[derive(Clone, Debug)]
pub(crate) struct Database {
    pool: PgPool,
    /// Whether `pool` goes through a transaction-mode pooler.
    pooled: bool,
    /// A pool that reaches PostgreSQL directly, for what needs a session.
    direct: Option<PgPool>,
}

/// A connection for one or a few statements: the pool's connection as it is,
/// or, behind a transaction pooler, a transaction pinning the server
/// connection. [`finish`](Session::finish) commits that transaction.
pub(crate) enum Session {
    Direct(PoolConnection<Postgres>),
    Pinned(Transaction<'static, Postgres>),
}

impl Database {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            pooled: false,
            direct: None,
        }
    }

    pub(crate) fn through_pooler(mut self, direct: Option<PgPool>) -> Self {
        self.pooled = true;
        self.direct = direct;
        self
    }

    /// The pool the store's statements go through.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether statements go through a transaction-mode pooler.
    pub(crate) fn pooled(&self) -> bool {
        self.pooled
    }

    /// A pool whose connections are real sessions: the direct one behind a
    /// pooler (`None` when none was given), the store's own otherwise.
    pub(crate) fn session_pool(&self) -> Option<&PgPool> {
        if self.pooled {
            self.direct.as_ref()
        } else {
            Some(&self.pool)
        }
    }

    /// A statement, unnamed behind a pooler.
    pub(crate) fn query<'q>(&self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(sql).persistent(!self.pooled)
    }

    /// A statement returning one column, unnamed behind a pooler.
    pub(crate) fn query_scalar<'q, O>(
        &self,
        sql: &'q str,
    ) -> QueryScalar<'q, Postgres, O, PgArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        sqlx::query_scalar(sql).persistent(!self.pooled)
    }

    /// After a connection turned out dead on first use (the store's own pool
    /// does not ping before each use): takes every idle connection out,
    /// pings it, and closes the dead ones, so that what follows gets a
    /// live one. Only ever run after a failure; its own failures are ignored.
    pub(crate) async fn sweep_dead(&self) {
        use sqlx::Connection as _;
        let mut idle = Vec::new();
        for _ in 0..self.pool.num_idle() {
            match tokio::time::timeout(std::time::Duration::from_millis(50), self.pool.acquire())
                .await
            {
                Ok(Ok(connection)) => idle.push(connection),
                _ => break,
            }
        }
        // Bounded as a whole: a sweep behind a network that answers nothing
        // must not hold up the command that asked for it. Connections not
        // reached in time go back to the pool as they are.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut closed = 0;
        for mut connection in idle {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let answered = tokio::time::timeout_at(deadline, connection.ping()).await;
            if !matches!(answered, Ok(Ok(()))) {
                let closing = std::time::Duration::from_millis(100);
                let _ = tokio::time::timeout(closing, connection.close()).await;
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::info!(closed, "closed pooled connections the server had ended");
        }
    }

    /// A connection for statements that need no transaction of their own.
    pub(crate) async fn session(&self) -> Result<Session, sqlx::Error> {
        if self.pooled {
            Ok(Session::Pinned(self.pool.begin().await?))
        } else {
            Ok(Session::Direct(self.pool.acquire().await?))
        }
    }
}

impl Session {
    /// Ends the session's transaction, if it has one: commits it.
    pub(crate) async fn finish(self) -> Result<(), sqlx::Error> {
        match self {
            Session::Direct(_) => Ok(()),
            Session::Pinned(transaction) => transaction.commit().await,
        }
    }
}

impl std::ops::Deref for Session {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Session::Direct(connection) => connection,
            Session::Pinned(transaction) => transaction,
        }
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Session::Direct(connection) => connection,
            Session::Pinned(transaction) => transaction,
        }
    }
}
