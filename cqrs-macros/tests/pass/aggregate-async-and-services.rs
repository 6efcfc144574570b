//! Sync and async command handlers, injected services, ignored events, a
//! snapshot version; dispatch through the generated `Aggregate` impl.

use std::sync::Arc;

use cqrskit::{Aggregate, Command, CommandPipeline, DomainEvent, InMemoryEventStore, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reserved {
    seats: u32,
    price: u64,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Released {
    seats: u32,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum ShowEvent {
    Reserved(Reserved),
    Released(Released),
    Noted(Noted),
}

struct Reserve {
    seats: u32,
}
struct Release {
    seats: u32,
}

#[derive(Command)]
enum ShowCommand {
    Reserve(Reserve),
    Release(Release),
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum ShowError {
    #[error("sold out")]
    SoldOut,
}

/// A price list the aggregate consults while deciding.
struct Prices {
    per_seat: u64,
}

impl Prices {
    async fn quote(&self, seats: u32) -> u64 {
        tokio::task::yield_now().await;
        self.per_seat * u64::from(seats)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Show {
    free: u32,
    opened: bool,
}

#[aggregate(type = "show", command = ShowCommand, event = ShowEvent, error = ShowError, services = Prices, snapshot_version = 4, ignore(Noted))]
impl Show {
    #[command]
    async fn reserve(&self, command: &Reserve, prices: &Prices) -> Result<Vec<ShowEvent>, ShowError> {
        let free = if self.opened { self.free } else { 10 };
        if command.seats > free {
            return Err(ShowError::SoldOut);
        }
        let price = prices.quote(command.seats).await;
        Ok(vec![Reserved { seats: command.seats, price }.into()])
    }

    #[command]
    fn release(&self, command: &Release) -> Result<Vec<ShowEvent>, ShowError> {
        Ok(vec![
            Released { seats: command.seats }.into(),
            Noted { text: "released".into() }.into(),
        ])
    }

    #[apply]
    fn reserved(&mut self, event: &Reserved) {
        if !self.opened {
            self.opened = true;
            self.free = 10;
        }
        self.free -= event.seats;
    }

    #[apply]
    fn released(&mut self, event: &Released) {
        self.free += event.seats;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(Show::TYPE, "show");
    assert_eq!(Show::SNAPSHOT_VERSION, 4);
    assert_eq!(ShowCommand::Reserve(Reserve { seats: 1 }).command_type(), "Reserve");

    let shows = CommandPipeline::<Show>::new(Arc::new(InMemoryEventStore::new()), Prices { per_seat: 7 });
    let outcome = shows.execute("gala", Reserve { seats: 4 }).await.unwrap();
    assert_eq!(outcome.events[0].payload, ShowEvent::Reserved(Reserved { seats: 4, price: 28 }));
    shows.execute("gala", Release { seats: 1 }).await.unwrap();
    assert_eq!(shows.load("gala").await.unwrap().state.free, 7);
    let refused = shows.execute("gala", Reserve { seats: 8 }).await.unwrap_err();
    assert_eq!(refused.rejection(), Some(&ShowError::SoldOut));
    assert_eq!(ShowEvent::from(Noted { text: String::new() }).event_type(), "Noted");
}
