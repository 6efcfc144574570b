//! A multi-stream projector method taking a type that none of the union's
//! member enums holds is refused at the method's parameter.

use cqrskit::{DomainEvent, EventUnion, projector};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct BookAdded;
#[derive(Debug, Serialize, Deserialize)]
struct MemberJoined;
#[derive(Debug, Serialize, Deserialize)]
struct Audited;

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum BookEvent {
    BookAdded(BookAdded),
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum MemberEvent {
    MemberJoined(MemberJoined),
}

#[derive(Debug, EventUnion)]
enum LibraryEvent {
    Book(BookEvent),
    Member(MemberEvent),
}

struct Loans;

#[projector(event = LibraryEvent)]
impl Loans {
    #[project]
    fn added(&self, _: &BookAdded) {}

    #[project]
    fn joined(&self, _: &MemberJoined) {}

    #[project]
    fn audited(&self, _: &Audited) {}
}

fn main() {}
