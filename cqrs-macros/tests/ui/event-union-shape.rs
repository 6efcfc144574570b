//! An event union holds one event enum per variant and is not generic; each
//! mistake is reported at once.

use cqrskit::{DomainEvent, EventUnion};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum BookEvent {
    Added { title: String },
}

#[derive(Debug, EventUnion)]
enum LibraryEvent {
    Book(BookEvent),
    Member { name: String },
    Closed,
}

#[derive(Debug, EventUnion)]
enum Generic<E> {
    Inner(E),
}

#[derive(EventUnion)]
struct NotAnEnum(BookEvent);

#[derive(Debug, EventUnion)]
enum Twice {
    First(BookEvent),
    Again(BookEvent),
}

// Code using a union whose derive failed reports nothing more.
fn main() {
    let _ = LibraryEvent::EVENT_TYPES;
    let _ = Twice::EVENT_TYPES;
}
