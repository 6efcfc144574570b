//! A bank account: open it, deposit, withdraw; an overdraft is refused.
//!
//! - [`domain`]: the events, commands and the [`BankAccount`] aggregate;
//! - [`read_model`]: account summaries kept up to date by a projector, and the
//!   query that reads them;
//! - [`balances`]: the balances as a PostgreSQL table, kept by the projection
//!   runner.

pub mod balances;
pub mod domain;
pub mod read_model;

pub use domain::{
    AccountCommand, AccountError, AccountEvent, AccountOpened, BankAccount, Deposit, DepositMade,
    MAX_BALANCE, OpenAccount, Withdraw, WithdrawalMade,
};
pub use read_model::{AccountSummaries, AccountSummary, GetAccountSummary};

#[cfg(test)]
mod tests;
