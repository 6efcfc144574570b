//! The balance read model as a PostgreSQL table, kept up to date by the
//! projection runner: each event is applied in the same transaction that
//! moves the runner's checkpoint, so the table sees every event exactly once.

use cqrskit::postgres::PostgresEventStore;
use cqrskit::postgres::sqlx::{self, PgConnection, PgPool};
use cqrskit::{BoxError, EventEnvelope, projector};

use super::domain::{AccountEvent, AccountOpened, DepositMade, WithdrawalMade};

type Envelope = EventEnvelope<AccountEvent>;

/// One row of the read model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceRow {
    /// The account id.
    pub account_id: String,
    /// Who owns it.
    pub owner: String,
    /// The balance in cents.
    pub balance: i64,
    /// The stream version the row reflects.
    pub version: i64,
}

/// The `account_balances` table in the store's schema.
#[derive(Clone, Debug)]
pub struct AccountBalances {
    table: String,
}

impl AccountBalances {
    /// The read model in the schema of `store`.
    pub fn new(store: &PostgresEventStore) -> Self {
        Self {
            table: format!("{}.account_balances", store.schema().quoted()),
        }
    }

    /// The row of one account, if the read model has it.
    ///
    /// # Errors
    ///
    /// When the database refuses.
    pub async fn get(
        &self,
        pool: &PgPool,
        account_id: &str,
    ) -> Result<Option<BalanceRow>, sqlx::Error> {
        // language=SQL
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT account_id, owner, balance, version FROM {} WHERE account_id = $1",
            self.table
        ))
        .bind(account_id)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|(account_id, owner, balance, version)| BalanceRow {
            account_id,
            owner,
            balance,
            version,
        }))
    }

    async fn add(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        amount: i64,
    ) -> Result<(), sqlx::Error> {
        // language=SQL
        sqlx::query(&format!(
            "UPDATE {} SET balance = balance + $2, version = $3 WHERE account_id = $1",
            self.table
        ))
        .bind(&envelope.stream.aggregate_id)
        .bind(amount)
        .bind(i64::try_from(envelope.version).unwrap_or(i64::MAX))
        .execute(tx)
        .await?;
        Ok(())
    }
}

#[projector(event = AccountEvent, name = "account_balances")]
impl AccountBalances {
    /// Creates the table if it does not exist yet: the runner calls it
    /// before its first batch and before a rebuild.
    #[setup]
    async fn create_table(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        // language=SQL
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                 account_id text PRIMARY KEY,
                 owner      text   NOT NULL,
                 balance    bigint NOT NULL,
                 version    bigint NOT NULL
             )",
            self.table
        ))
        .execute(tx)
        .await?;
        Ok(())
    }

    #[project]
    async fn opened(
        &self,
        event: &AccountOpened,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        // language=SQL
        sqlx::query(&format!(
            "INSERT INTO {} (account_id, owner, balance, version) VALUES ($1, $2, 0, $3)",
            self.table
        ))
        .bind(&envelope.stream.aggregate_id)
        .bind(&event.owner)
        .bind(i64::try_from(envelope.version).unwrap_or(i64::MAX))
        .execute(tx)
        .await?;
        Ok(())
    }

    #[project]
    async fn deposited(
        &self,
        event: &DepositMade,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        self.add(tx, envelope, bigint(event.amount)?).await?;
        Ok(())
    }

    #[project]
    async fn withdrew(
        &self,
        event: &WithdrawalMade,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        self.add(tx, envelope, -bigint(event.amount)?).await?;
        Ok(())
    }

    #[reset]
    async fn clear(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        // language=SQL
        sqlx::query(&format!("TRUNCATE {}", self.table))
            .execute(tx)
            .await?;
        Ok(())
    }
}

// Clamping an amount the bigint column cannot hold would record a wrong
// balance without a word; an error hands the event to the runner's failure
// policy instead, as PostgreSQL's own error does when a sum leaves the range.
fn bigint(amount: u64) -> Result<i64, BoxError> {
    i64::try_from(amount)
        .map_err(|_| format!("amount {amount} does not fit the bigint balance column").into())
}

/// The options the balances projection runs with: each of its rows is one
/// account's, so an account whose event the table cannot take (written by
/// other code than the handlers, which refuse such amounts) has its events
/// parked behind that one ([`OnExhausted::ParkStream`](cqrskit::postgres::OnExhausted::ParkStream)), its balance left
/// as it was, while every other account's balance stays current. A
/// projection combining accounts (a total) would stop instead.
pub fn balances_options() -> cqrskit::postgres::RunnerOptions {
    use cqrskit::postgres::{FailurePolicy, OnExhausted, RunnerOptions};
    RunnerOptions::default().failure(FailurePolicy::default().on_exhausted(OnExhausted::ParkStream))
}
