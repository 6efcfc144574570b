use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct Deposited {
    amount: u64,
}

#[derive(cqrskit::Command)]
struct Deposit {
    amount: u64,
}

fn main() {}
