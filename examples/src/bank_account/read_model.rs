//! The account's read side: one summary row per account.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use cqrs_core::{BoxError, EventEnvelope, Projector, Query, QueryHandler, async_trait};

use super::AccountEvent;

/// What the read side knows about one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account id.
    pub account_id: String,
    /// Who owns it.
    pub owner: String,
    /// The balance in cents.
    pub balance: u64,
    /// How many deposits and withdrawals it has seen.
    pub transactions: u32,
    /// The stream version this summary reflects: replaying an event it has
    /// already seen changes nothing.
    pub version: u64,
}

/// Account summaries, kept in memory and updated by projecting account events.
#[derive(Debug, Default)]
pub struct AccountSummaries {
    rows: RwLock<HashMap<String, AccountSummary>>,
}

impl AccountSummaries {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every summary, ordered by account id.
    pub fn all(&self) -> Vec<AccountSummary> {
        let mut rows: Vec<_> = self.read().values().cloned().collect();
        rows.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        rows
    }

    // A panic in another thread cannot leave a row half-updated (each update
    // is checked before it is written), so a poisoned lock is still readable.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, AccountSummary>> {
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Projector for AccountSummaries {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "account_summaries"
    }

    async fn project(&self, event: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        let id = &event.stream.aggregate_id;
        let row = rows.entry(id.clone()).or_insert_with(|| AccountSummary {
            account_id: id.clone(),
            ..AccountSummary::default()
        });
        if event.version <= row.version {
            return Ok(());
        }
        match &event.payload {
            AccountEvent::AccountOpened { owner } => row.owner = owner.clone(),
            AccountEvent::DepositMade { amount } => {
                row.balance += amount;
                row.transactions += 1;
            }
            AccountEvent::WithdrawalMade { amount } => {
                row.balance = row.balance.checked_sub(*amount).ok_or_else(|| {
                    format!("withdrawal of {amount} exceeds balance {}", row.balance)
                })?;
                row.transactions += 1;
            }
        }
        row.version = event.version;
        Ok(())
    }
}

/// The summary of one account, if the read model has seen it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetAccountSummary {
    /// The account id.
    pub account_id: String,
}

impl Query for GetAccountSummary {
    type Output = Option<AccountSummary>;
}

impl QueryHandler<GetAccountSummary> for AccountSummaries {
    type Error = Infallible;

    async fn handle(&self, query: GetAccountSummary) -> Result<Option<AccountSummary>, Infallible> {
        Ok(self.read().get(&query.account_id).cloned())
    }
}
