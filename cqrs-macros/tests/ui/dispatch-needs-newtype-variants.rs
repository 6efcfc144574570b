use cqrskit::{Command, DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum LampEvent {
    SwitchedOn,
    Dimmed { percent: u8 },
}

#[derive(Command)]
enum LampCommand {
    SwitchOn,
}

#[derive(Debug, thiserror::Error)]
#[error("broken")]
struct Broken;

#[derive(Default, Serialize, Deserialize)]
struct Lamp;

#[aggregate(type = "lamp", command = LampCommand, event = LampEvent, error = Broken)]
impl Lamp {}

fn main() {}
