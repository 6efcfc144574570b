use cqrskit::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Placed;

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum OrderEvent {
    Placed(Placed),
}

#[derive(Default, Serialize, Deserialize)]
struct OrderView;

#[cqrskit::document(name = "order_views", table = "x")]
impl OrderView {
    #[apply(id = customer)]
    fn placed(&mut self, _: &Placed) {}
}

#[derive(Default, Serialize, Deserialize)]
struct Empty;

#[cqrskit::document(event = OrderEvent)]
impl Empty {
    fn helper(&self) {}
}

fn main() {}
