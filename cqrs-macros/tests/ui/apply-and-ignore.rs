use cqrskit::{Command, DomainEvent, aggregate};
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

#[aggregate(type = "account", command = AccountCommand, event = AccountEvent, error = Refused, ignore(Opened, Withdrawn, Opened))]
impl Account {
    #[command]
    fn open(&self, _: &Open) -> Decision {
        Ok(vec![])
    }

    #[command]
    fn deposit(&self, _: &Deposit) -> Decision {
        Ok(vec![])
    }

    #[command]
    fn withdraw(&self, _: &Withdraw) -> Decision {
        Ok(vec![])
    }

    #[apply]
    fn deposited(&mut self, _: &Deposited) {}

    #[apply]
    fn withdrawn(&mut self, _: &Withdrawn) {}
}

fn main() {}
