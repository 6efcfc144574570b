use cqrskit::{Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened;
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdrawn {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Opened(Opened),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

struct Open;
struct Deposit {
    amount: u64,
}
struct Withdraw {
    amount: u64,
}

#[derive(Command)]
enum AccountCommand {
    Open(Open),
    Deposit(Deposit),
    Withdraw(Withdraw),
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

type Decision = Result<Vec<AccountEvent>, Refused>;

struct Audited;

struct Balances;

#[cqrskit::projector(event = AccountEvent)]
impl Balances {
    #[project]
    fn deposited(&self, _: &Deposited) {}

    #[project]
    fn audited(&self, _: &Audited) {}
}

fn main() {}
