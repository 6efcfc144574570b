//! A projector whose methods take a context (here a stand-in for a database
//! transaction) and a reset method; the context reaches every call.

use std::sync::Arc;

use cqrskit::{
    CommandPipeline, DomainEvent, EventStore, EventEnvelope, InMemoryEventStore, LogFilter,
    Position, Projector, aggregate, projector,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Booked {
    room: u32,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cancelled {
    room: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum HotelEvent {
    Booked(Booked),
    Cancelled(Cancelled),
}

#[derive(cqrskit::Command)]
enum HotelCommand {
    Book(Booked),
    Cancel(Cancelled),
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Default, Serialize, Deserialize)]
struct Hotel;

#[aggregate(type = "hotel", command = HotelCommand, event = HotelEvent, error = Never, ignore(Booked, Cancelled))]
impl Hotel {
    #[command]
    fn book(&self, c: &Booked) -> Result<Vec<HotelEvent>, Never> {
        Ok(vec![c.clone().into()])
    }
    #[command]
    fn cancel(&self, c: &Cancelled) -> Result<Vec<HotelEvent>, Never> {
        Ok(vec![c.clone().into()])
    }
}

/// Stands in for a transaction: the projector writes its rows here.
#[derive(Default)]
struct Ledger {
    occupied: Vec<u32>,
    writes: usize,
}

struct Occupancy;

#[projector(event = HotelEvent, name = "occupancy_v2")]
impl Occupancy {
    #[project]
    async fn booked(&self, event: &Booked, envelope: &EventEnvelope<HotelEvent>, ledger: &mut Ledger) -> Result<(), String> {
        assert_eq!(envelope.event_type, "Booked");
        ledger.occupied.push(event.room);
        ledger.writes += 1;
        Ok(())
    }

    #[project]
    fn cancelled(&self, event: &Cancelled, ledger: &mut Ledger) {
        ledger.occupied.retain(|room| *room != event.room);
        ledger.writes += 1;
    }

    #[reset]
    fn clear(&self, ledger: &mut Ledger) {
        ledger.occupied.clear();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = Arc::new(InMemoryEventStore::new());
    let hotel = CommandPipeline::<Hotel>::new(store.clone(), ());
    hotel.execute("ritz", Booked { room: 1 }).await.unwrap();
    hotel.execute("ritz", Booked { room: 2 }).await.unwrap();
    hotel.execute("ritz", Cancelled { room: 1 }).await.unwrap();

    let occupancy = Occupancy;
    assert_eq!(Projector::<Ledger>::name(&occupancy), "occupancy_v2");
    let mut ledger = Ledger::default();
    let filter = LogFilter::event_types(Occupancy::EVENT_TYPES.iter().copied());
    for stored in store.read_log(Position::START, &filter, 100).await.unwrap() {
        let event = stored.decode::<HotelEvent>().unwrap();
        occupancy.project(&event, &mut ledger).await.unwrap();
    }
    assert_eq!((ledger.occupied.as_slice(), ledger.writes), (&[2][..], 3));
    occupancy.reset(&mut ledger).await.unwrap();
    assert!(ledger.occupied.is_empty());
}
