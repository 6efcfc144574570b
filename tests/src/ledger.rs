//! A read model in PostgreSQL for the projection tests: account balances,
//! plus a record of every event applied, whose primary key makes a second
//! application of one event fail loudly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use cqrs_examples::bank_account::AccountEvent;
use cqrskit::{BoxError, DomainEvent, EventEnvelope, Projector, async_trait};
use sqlx::{PgConnection, PgPool};

use crate::postgres::TestStore;

/// Every event type of the account: what the current projector declares.
pub const ALL_TYPES: &[&str] = AccountEvent::EVENT_TYPES;

/// Balances per account, maintained in the store's schema.
pub struct Ledger {
    name: String,
    balances: String,
    applied: String,
    /// A deposit of this amount always fails (0: none).
    pub poison: AtomicU64,
    /// This many applications fail after writing, as if the process died
    /// before the commit.
    pub failures_after_writing: AtomicU32,
    /// A deposit of this amount makes the projector pause (0: none).
    pub slow_amount: AtomicU64,
    /// How long that pause lasts, in milliseconds (default 300).
    pub slow_millis: AtomicU64,
    /// The event types it declares (default: all of the account's): a
    /// projector of an older version declares fewer.
    pub types: &'static [&'static str],
    /// A deposit of this amount makes the projector panic (0: none).
    pub panic_amount: AtomicU64,
    /// A deposit of this amount makes the projector run a statement that
    /// fails, swallow the error and report success, leaving its
    /// transaction aborted (0: none).
    pub swallow_amount: AtomicU64,
    /// A deposit of this amount makes the projector send its own `ROLLBACK`
    /// and report success (0: none).
    pub rollback_amount: AtomicU64,
}

impl Ledger {
    /// The ledger named `name` whose tables already exist in `schema` (for
    /// a runner in another process).
    pub fn open(schema: &str, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            balances: format!("\"{schema}\".{name}_balances"),
            applied: format!("\"{schema}\".{name}_applied"),
            poison: AtomicU64::new(0),
            failures_after_writing: AtomicU32::new(0),
            slow_amount: AtomicU64::new(0),
            slow_millis: AtomicU64::new(300),
            types: AccountEvent::EVENT_TYPES,
            panic_amount: AtomicU64::new(0),
            swallow_amount: AtomicU64::new(0),
            rollback_amount: AtomicU64::new(0),
        }
    }

    /// A ledger named `name`, with its tables (`<name>_balances`,
    /// `<name>_applied`) created in the test store's schema.
    ///
    /// # Panics
    ///
    /// When the tables cannot be created.
    pub async fn create(db: &TestStore, name: &str) -> Self {
        let ledger = Self::open(&db.schema, name);
        for ddl in [
            format!(
                "CREATE TABLE {} (account_id text PRIMARY KEY, balance bigint NOT NULL, events integer NOT NULL)",
                ledger.balances
            ),
            format!(
                "CREATE TABLE {} (event_id uuid PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                ledger.applied
            ),
        ] {
            sqlx::query(&ddl)
                .execute(db.pool())
                .await
                .expect("create ledger table");
        }
        ledger
    }

    /// Balances as the read model holds them.
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn balances(&self, pool: &PgPool) -> BTreeMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(&format!(
            "SELECT account_id, balance FROM {}",
            self.balances
        ))
        .fetch_all(pool)
        .await
        .expect("read balances")
        .into_iter()
        .collect()
    }

    /// How many events the read model applied.
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn applied(&self, pool: &PgPool) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", self.applied))
            .fetch_one(pool)
            .await
            .expect("count applied")
    }
}

/// Opens `count` accounts and makes a few deposits and withdrawals on each
/// (5 events per account: an opening, deposits of 100, 20 and 3, a
/// withdrawal of 50).
///
/// # Panics
///
/// When a command fails.
pub async fn business(
    accounts: &cqrskit::CommandPipeline<cqrs_examples::bank_account::BankAccount>,
    prefix: &str,
    count: usize,
) {
    use cqrs_examples::bank_account::{Deposit, OpenAccount, Withdraw};
    for n in 0..count {
        let id = format!("{prefix}{n}");
        accounts
            .execute(&id, OpenAccount { owner: id.clone() })
            .await
            .expect("open");
        for amount in [100, 20, 3] {
            accounts
                .execute(&id, Deposit { amount })
                .await
                .expect("deposit");
        }
        accounts
            .execute(&id, Withdraw { amount: 50 })
            .await
            .expect("withdraw");
    }
}

/// Balances folded directly from every account event in the log: what the
/// read model must equal.
///
/// # Panics
///
/// When the log cannot be read.
pub async fn fold(store: &dyn cqrskit::EventStore) -> BTreeMap<String, i64> {
    let mut balances = BTreeMap::new();
    let mut after = cqrskit::Position::START;
    let filter = cqrskit::LogFilter::event_types(AccountEvent::EVENT_TYPES.iter().copied());
    loop {
        let batch = store
            .read_log(after, &filter, 1000)
            .await
            .expect("read log");
        let Some(last) = batch.last() else { break };
        after = last.position;
        for stored in batch {
            let id = stored.stream.aggregate_id.clone();
            match stored.decode::<AccountEvent>().expect("decode").payload {
                AccountEvent::AccountOpened(_) => {
                    balances.insert(id, 0);
                }
                AccountEvent::DepositMade(deposit) => {
                    *balances.entry(id).or_default() += deposit.amount as i64;
                }
                AccountEvent::WithdrawalMade(withdrawal) => {
                    *balances.entry(id).or_default() -= withdrawal.amount as i64;
                }
            }
        }
    }
    balances
}

#[async_trait]
impl Projector<PgConnection> for Ledger {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.types
    }

    async fn project(
        &self,
        event: &EventEnvelope<AccountEvent>,
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        let id = &event.stream.aggregate_id;
        if let AccountEvent::DepositMade(deposit) = &event.payload {
            if deposit.amount == self.poison.load(Ordering::SeqCst) {
                return Err(format!("poison deposit of {}", deposit.amount).into());
            }
            if deposit.amount == self.slow_amount.load(Ordering::SeqCst) {
                let pause = self.slow_millis.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            assert!(
                deposit.amount != self.panic_amount.load(Ordering::SeqCst),
                "the ledger cannot take a deposit of {}",
                deposit.amount
            );
            if deposit.amount == self.rollback_amount.load(Ordering::SeqCst) {
                sqlx::query("ROLLBACK").execute(&mut *tx).await?;
                return Ok(());
            }
            if deposit.amount == self.swallow_amount.load(Ordering::SeqCst) {
                let failed = sqlx::query("SELECT 1 / 0").execute(&mut *tx).await;
                assert!(failed.is_err(), "division by zero fails");
                return Ok(());
            }
        }
        // Unnamed statements: the runner may reach PostgreSQL through a
        // transaction pooler (see `tests/tests/pooler.rs`).
        sqlx::query(&format!(
            "INSERT INTO {} (event_id) VALUES ($1)",
            self.applied
        ))
        .persistent(false)
        .bind(event.event_id)
        .execute(&mut *tx)
        .await?;
        let (sql, amount) = match &event.payload {
            AccountEvent::AccountOpened(_) => (
                format!(
                    "INSERT INTO {} (account_id, balance, events) VALUES ($1, $2, 1)",
                    self.balances
                ),
                0,
            ),
            AccountEvent::DepositMade(deposit) => (
                format!(
                    "UPDATE {} SET balance = balance + $2, events = events + 1 WHERE account_id = $1",
                    self.balances
                ),
                deposit.amount as i64,
            ),
            AccountEvent::WithdrawalMade(withdrawal) => (
                format!(
                    "UPDATE {} SET balance = balance - $2, events = events + 1 WHERE account_id = $1",
                    self.balances
                ),
                withdrawal.amount as i64,
            ),
        };
        sqlx::query(&sql)
            .persistent(false)
            .bind(id)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        let remaining = self.failures_after_writing.load(Ordering::SeqCst);
        if remaining > 0 {
            self.failures_after_writing
                .store(remaining - 1, Ordering::SeqCst);
            return Err("crashed after writing, before the commit".into());
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("TRUNCATE {}, {}", self.balances, self.applied))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
