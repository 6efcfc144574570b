//! The account's read side: one summary row per account.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use cqrskit::{BoxError, EventEnvelope, Query, QueryHandler, projector};

use super::domain::{AccountEvent, AccountOpened, DepositMade, WithdrawalMade};

type Envelope = EventEnvelope<AccountEvent>;

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

#[projector(event = AccountEvent)]
impl AccountSummaries {
    #[project]
    fn opened(&self, event: &AccountOpened, envelope: &Envelope) -> Result<(), BoxError> {
        self.update(envelope, |row| {
            row.owner = event.owner.clone();
            Ok(())
        })
    }

    #[project]
    fn deposited(&self, event: &DepositMade, envelope: &Envelope) -> Result<(), BoxError> {
        self.update(envelope, |row| {
            row.balance = row.balance.checked_add(event.amount).ok_or_else(|| {
                format!(
                    "deposit of {} overflows balance {}",
                    event.amount, row.balance
                )
            })?;
            count_transaction(row)
        })
    }

    #[project]
    fn withdrew(&self, event: &WithdrawalMade, envelope: &Envelope) -> Result<(), BoxError> {
        self.update(envelope, |row| {
            row.balance = row.balance.checked_sub(event.amount).ok_or_else(|| {
                format!(
                    "withdrawal of {} exceeds balance {}",
                    event.amount, row.balance
                )
            })?;
            count_transaction(row)
        })
    }

    /// Applies `change` to the event's account row, unless the row already
    /// reflects that event; a failed change leaves the row as it was.
    fn update(
        &self,
        envelope: &Envelope,
        change: impl FnOnce(&mut AccountSummary) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        let id = &envelope.stream.aggregate_id;
        let current = rows.get(id).cloned().unwrap_or_else(|| AccountSummary {
            account_id: id.clone(),
            ..AccountSummary::default()
        });
        if envelope.version <= current.version {
            return Ok(());
        }
        let mut updated = current;
        change(&mut updated)?;
        updated.version = envelope.version;
        rows.insert(id.clone(), updated);
        Ok(())
    }
}

// A count that wrapped would misreport silently; failing names the event.
fn count_transaction(row: &mut AccountSummary) -> Result<(), BoxError> {
    row.transactions = row
        .transactions
        .checked_add(1)
        .ok_or("transaction count overflows")?;
    Ok(())
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
