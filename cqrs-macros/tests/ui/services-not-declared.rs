use cqrskit::{Command, DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Priced {
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum QuoteEvent {
    Priced(Priced),
}

struct Price;

#[derive(Command)]
enum QuoteCommand {
    Price(Price),
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

/// What the handler consults; the attribute forgets to say so.
struct Catalog;

impl Catalog {
    fn cents(&self) -> u64 {
        100
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Quote;

#[aggregate(type = "quote", command = QuoteCommand, event = QuoteEvent, error = Refused)]
impl Quote {
    #[command]
    fn price(&self, _: &Price, catalog: &Catalog) -> Result<Vec<QuoteEvent>, Refused> {
        Ok(vec![Priced { cents: catalog.cents() }.into()])
    }

    #[apply]
    fn priced(&mut self, _: &Priced) {}
}

fn main() {}
