//! A type held by two member enums of a union: a method taking it could mean
//! either, so it does not compile.

use cqrskit::{DomainEvent, EventUnion, projector};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Noted;

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum BookEvent {
    #[event(name = "BookNoted")]
    Noted(Noted),
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum MemberEvent {
    #[event(name = "MemberNoted")]
    Noted(Noted),
}

#[derive(Debug, EventUnion)]
enum LibraryEvent {
    Book(BookEvent),
    Member(MemberEvent),
}

struct Notes;

#[projector(event = LibraryEvent)]
impl Notes {
    #[project]
    fn noted(&self, _: &Noted) {}
}

fn main() {}
