//! The account's write side: what can happen to it, and the rules.
//!
//! Each command and each event is its own type, held by a newtype variant of
//! its enum; the macros route each to the method that takes it.

use cqrskit::{Command, DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

/// Facts about an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum AccountEvent {
    /// The account was opened.
    AccountOpened(AccountOpened),
    /// Money came in.
    DepositMade(DepositMade),
    /// Money went out.
    WithdrawalMade(WithdrawalMade),
}

/// The account was opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOpened {
    /// Who owns it.
    pub owner: String,
}

/// Money came in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositMade {
    /// How much, in cents.
    pub amount: u64,
}

/// Money went out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalMade {
    /// How much, in cents.
    pub amount: u64,
}

/// What a client can ask of an account.
#[derive(Clone, Debug, PartialEq, Eq, Command)]
pub enum AccountCommand {
    /// Open the account. Only ever sent to a new account, so it is
    /// decided without a load (see `Command::creates_aggregate`).
    #[command(creates)]
    Open(OpenAccount),
    /// Pay money in.
    Deposit(Deposit),
    /// Take money out.
    Withdraw(Withdraw),
}

/// Open the account for `owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAccount {
    /// Who will own it.
    pub owner: String,
}

/// Pay money in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// How much, in cents.
    pub amount: u64,
}

/// Take money out; refused if the balance does not cover it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdraw {
    /// How much, in cents.
    pub amount: u64,
}

/// Why the account refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// `Open` on an account that is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// A deposit or withdrawal on an account nobody opened.
    #[error("no such account: open it first")]
    NotOpen,
    /// A deposit or withdrawal of nothing.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// A withdrawal larger than the balance.
    #[error("insufficient funds: the balance is {balance}, the withdrawal {requested}")]
    InsufficientFunds {
        /// The balance at the time.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// A deposit that would take the balance past [`MAX_BALANCE`].
    #[error(
        "balance overflow: the balance is {balance}, the deposit {amount} would take it past {}",
        MAX_BALANCE
    )]
    BalanceOverflow {
        /// The balance at the time.
        balance: u64,
        /// The amount deposited.
        amount: u64,
    },
}

/// The largest balance an account may hold, in cents: what a PostgreSQL
/// `bigint` holds, so that every read model can store every balance the
/// account accepts. A deposit past it is refused at the command; an event
/// no read model could hold would stop (or park) its projections.
pub const MAX_BALANCE: u64 = i64::MAX as u64;

/// The account's state, as far as its rules need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    /// Who owns it; `None` until it is opened.
    pub owner: Option<String>,
    /// The balance in cents.
    pub balance: u64,
}

type Decision = Result<Vec<AccountEvent>, AccountError>;

#[aggregate(type = "account", command = AccountCommand, event = AccountEvent, error = AccountError)]
impl BankAccount {
    #[command]
    fn open(&self, command: &OpenAccount) -> Decision {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(vec![
            AccountOpened {
                owner: command.owner.clone(),
            }
            .into(),
        ])
    }

    #[command]
    fn deposit(&self, &Deposit { amount }: &Deposit) -> Decision {
        self.check_movement(amount)?;
        if self
            .balance
            .checked_add(amount)
            .is_none_or(|balance| balance > MAX_BALANCE)
        {
            return Err(AccountError::BalanceOverflow {
                balance: self.balance,
                amount,
            });
        }
        Ok(vec![DepositMade { amount }.into()])
    }

    #[command]
    fn withdraw(&self, &Withdraw { amount }: &Withdraw) -> Decision {
        self.check_movement(amount)?;
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(vec![WithdrawalMade { amount }.into()])
    }

    fn check_movement(&self, amount: u64) -> Result<(), AccountError> {
        match (&self.owner, amount) {
            (None, _) => Err(AccountError::NotOpen),
            (_, 0) => Err(AccountError::ZeroAmount),
            _ => Ok(()),
        }
    }

    #[apply]
    fn opened(&mut self, event: &AccountOpened) {
        self.owner = Some(event.owner.clone());
    }

    // The handlers refuse any movement that leaves the balance's range, so
    // saturating changes nothing for the events they decided. An event cannot
    // be refused once stored, though, and events written by other code (an
    // import, an older version without these checks) must still load rather
    // than panic (debug) or wrap (release).
    #[apply]
    fn deposited(&mut self, event: &DepositMade) {
        self.balance = self.balance.saturating_add(event.amount);
    }

    #[apply]
    fn withdrew(&mut self, event: &WithdrawalMade) {
        self.balance = self.balance.saturating_sub(event.amount);
    }
}
