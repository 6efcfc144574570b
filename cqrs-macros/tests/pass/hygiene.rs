//! Generated code names everything by absolute path: local items that shadow
//! prelude and std names change nothing.
#![allow(dead_code, non_camel_case_types)]

use cqrskit::{DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

struct Option;
struct Some;
struct None;
struct Ok;
struct Err;
struct Vec;
struct String;
struct Box;
type Result = ();
mod core {}
mod std {}
mod cqrs {}
mod serde_json {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rang {
    times: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum BellEvent {
    Rang(Rang),
}

#[derive(cqrskit::Command)]
enum BellCommand {
    Ring(u32),
}

#[derive(Debug, thiserror::Error)]
#[error("cracked")]
struct Cracked;

#[derive(Default, Serialize, Deserialize)]
struct Bell {
    rung: u32,
}

#[aggregate(type = "bell", command = BellCommand, event = BellEvent, error = Cracked)]
impl Bell {
    #[command]
    fn ring(&self, times: &u32) -> ::std::result::Result<::std::vec::Vec<BellEvent>, Cracked> {
        ::std::result::Result::Ok(::std::vec![Rang { times: *times }.into()])
    }

    #[apply]
    fn rang(&mut self, event: &Rang) {
        self.rung += event.times;
    }
}

fn main() {
    assert_eq!(BellEvent::EVENT_TYPES, ["Rang"]);
    let mut bell = Bell::default();
    cqrskit::Aggregate::apply(&mut bell, &BellEvent::Rang(Rang { times: 2 }));
    assert_eq!(bell.rung, 2);
}
