//! Two member enums storing the same type name: a stored event of that name
//! could not be told apart, so the union does not compile.

use cqrskit::{DomainEvent, EventUnion};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum BookEvent {
    Added { title: String },
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum MemberEvent {
    Added { name: String },
}

#[derive(Debug, EventUnion)]
enum LibraryEvent {
    Book(BookEvent),
    Member(MemberEvent),
}

fn main() {}
