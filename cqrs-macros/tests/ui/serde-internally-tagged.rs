use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type")]
enum AccountEvent {
    Opened { owner: String },
    #[serde(skip)]
    Internal,
}

fn main() {}
