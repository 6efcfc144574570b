use std::sync::Arc;

use cqrskit::{DomainEvent, Projector, projector};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Booked;

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum HotelEvent {
    Booked(Booked),
}

/// What a store's runner hands its projectors (a transaction, say).
struct Transaction;

/// A projector that takes no context: a `Projector<()>`.
#[derive(Default)]
struct Occupancy;

#[projector(event = HotelEvent)]
impl Occupancy {
    #[project]
    fn booked(&self, _: &Booked) {}
}

/// A runner that hands its projectors a `Transaction`.
fn run<P: Projector<Transaction> + ?Sized>(_: Arc<P>) {}

fn main() {
    run(Arc::new(Occupancy));
}
