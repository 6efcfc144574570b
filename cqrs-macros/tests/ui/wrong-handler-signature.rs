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

#[aggregate(type = "account", command = AccountCommand, event = AccountEvent, error = Refused)]
impl Account {
    // Deciding must not change state.
    #[command]
    fn open(&mut self, _: &Open) -> Decision {
        Ok(vec![])
    }

    // The command is taken by reference.
    #[command]
    fn deposit(&self, command: Deposit) -> Decision {
        Ok(vec![Deposited { amount: command.amount }.into()])
    }

    // A handler returns its decision.
    #[command]
    fn withdraw(&self, _: &Withdraw) {}

    // Applying changes state.
    #[apply]
    fn opened(&self, _: &Opened) {}

    // Applying cannot fail.
    #[apply]
    fn deposited(&mut self, _: &Deposited) -> Result<(), Refused> {
        Ok(())
    }

    // One event at a time.
    #[apply]
    fn withdrawn(&mut self, _: &Withdrawn, _: &Withdrawn) {}
}

fn main() {}
