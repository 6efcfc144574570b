use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Deposited { amount: u64 },
    #[event(name = "Deposited")]
    DepositedV2 { amount: u64, currency: String },
    Closed,
    #[event(name = "Closed")]
    Shut,
}

fn main() {}
