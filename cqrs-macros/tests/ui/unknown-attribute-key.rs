use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    #[event(nmae = "account.opened")]
    Opened,
    #[event(version = 2, rename = "x")]
    Closed,
    #[event(creates)]
    Reopened,
}

#[derive(cqrskit::Command)]
enum AccountCommand {
    #[command(version = 2)]
    Open,
}

fn main() {}
