use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    #[event(version = 0)]
    Opened,
    #[event(name = "")]
    Closed,
}

fn main() {}
