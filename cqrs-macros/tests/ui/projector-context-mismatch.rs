use cqrskit::{DomainEvent, projector};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Booked;
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cancelled;

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum HotelEvent {
    Booked(Booked),
    Cancelled(Cancelled),
}

struct Ledger;
struct Journal;

struct Occupancy;

#[projector(event = HotelEvent)]
impl Occupancy {
    #[project]
    fn booked(&self, _: &Booked, _: &mut Ledger) {}

    #[project]
    fn cancelled(&self, _: &Cancelled, _: &mut Journal) {}

    #[reset]
    fn clear(&self) {}

    #[reset]
    fn clear_again(&self) {}
}

fn main() {}
