use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Placed {
    customer: String,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Paid;
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipped;
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Archived;

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum OrderEvent {
    Placed(Placed),
    Paid(Paid),
    Shipped(Shipped),
    Archived(Archived),
}

#[derive(Default, Serialize, Deserialize)]
struct OrderView {
    paid: bool,
}

#[cqrskit::document(event = OrderEvent, name = "Order Views")]
impl OrderView {
    // Changes the document through `&self`.
    #[apply]
    fn placed(&self, _: &Placed) {}

    // Async: a document changes in memory.
    #[apply]
    async fn paid(&mut self, _: &Paid) {
        self.paid = true;
    }

    // Reads `self`, which an id method has not.
    #[id]
    fn customer(&self, event: &Placed) -> String {
        event.customer.clone()
    }

    // Names documents for an event nothing applies.
    #[id]
    fn shipped_to(_: &Shipped) -> &'static str {
        "x"
    }

    // A delete method answers whether to delete.
    #[delete]
    fn archived(&self, _: &Archived) {}

    // Two methods for one event.
    #[delete]
    fn paid_again(&self, _: &Paid) -> bool {
        false
    }
}

fn main() {}
