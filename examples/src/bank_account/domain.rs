//! The account's write side: what can happen to it, and the rules.

use cqrs_core::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

/// Facts about an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened.
    AccountOpened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    DepositMade {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out.
    WithdrawalMade {
        /// How much, in cents.
        amount: u64,
    },
}

impl DomainEvent for AccountEvent {
    const EVENT_TYPES: &'static [&'static str] =
        &["AccountOpened", "DepositMade", "WithdrawalMade"];

    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::DepositMade { .. } => "DepositMade",
            AccountEvent::WithdrawalMade { .. } => "WithdrawalMade",
        }
    }
}

/// What a client can ask of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    /// Open the account for `owner`.
    Open {
        /// Who will own it.
        owner: String,
    },
    /// Pay money in.
    Deposit {
        /// How much, in cents.
        amount: u64,
    },
    /// Take money out; refused if the balance does not cover it.
    Withdraw {
        /// How much, in cents.
        amount: u64,
    },
}

impl Command for AccountCommand {
    fn command_type(&self) -> &'static str {
        match self {
            AccountCommand::Open { .. } => "Open",
            AccountCommand::Deposit { .. } => "Deposit",
            AccountCommand::Withdraw { .. } => "Withdraw",
        }
    }
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
}

/// The account's state, as far as its rules need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    /// Who owns it; `None` until it is opened.
    pub owner: Option<String>,
    /// The balance in cents.
    pub balance: u64,
}

impl Aggregate for BankAccount {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &self,
        command: &AccountCommand,
        _services: &(),
    ) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { .. } if self.owner.is_some() => Err(AccountError::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::AccountOpened {
                owner: owner.clone(),
            }]),
            _ if self.owner.is_none() => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(AccountError::ZeroAmount)
            }
            AccountCommand::Deposit { amount } => {
                Ok(vec![AccountEvent::DepositMade { amount: *amount }])
            }
            AccountCommand::Withdraw { amount } if *amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: *amount,
                })
            }
            AccountCommand::Withdraw { amount } => {
                Ok(vec![AccountEvent::WithdrawalMade { amount: *amount }])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::DepositMade { amount } => self.balance += amount,
            AccountEvent::WithdrawalMade { amount } => self.balance -= amount,
        }
    }
}
