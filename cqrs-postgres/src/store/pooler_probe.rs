//! Finding out, at connect, that a "direct" URL leads to a connection
//! pooler in transaction mode, where the store must not run as if it had
//! sessions of its own.

use sqlx::PgPool;

use crate::error::Result;

/// Refuses a connection pooler in transaction mode behind `pool`: one
/// connection asks for its PostgreSQL backend and finishes, then a second,
/// opened while the first is still held, asks too. Two client connections
/// open at once never share a session when connected directly or through a
/// pooler in session mode; a transaction pooler hands the session the first
/// one left idle to the second. (It may hand it another idle session: the
/// probe then passes, as it did before it existed.) Simple queries only:
/// named statements are what such a pooler breaks.
pub(super) async fn refuse_transaction_pooler(pool: &PgPool, target: &str) -> Result<()> {
    use sqlx::Row as _;
    // Two connections at once are needed: a pool of one cannot tell.
    if pool.options().get_max_connections() < 2 {
        return Ok(());
    }
    let backend = |row: sqlx::postgres::PgRow| row.try_get::<i32, _>(0);
    let mut first = pool.acquire().await?;
    let mut second = pool.acquire().await?;
    let one = backend(
        sqlx::raw_sql("SELECT pg_backend_pid()")
            .fetch_one(&mut *first)
            .await?,
    )?;
    let other = backend(
        sqlx::raw_sql("SELECT pg_backend_pid()")
            .fetch_one(&mut *second)
            .await?,
    )?;
    if one == other {
        // Neither connection is to be trusted with a named statement again.
        first.close().await.ok();
        second.close().await.ok();
        return Err(crate::Error::TransactionPooler {
            target: target.to_owned(),
            backend: one,
        });
    }
    Ok(())
}
