use cqrs_core::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct Deposited {
    amount: u64,
}

#[derive(cqrs_core::Command)]
struct Deposit {
    amount: u64,
}

fn main() {}
