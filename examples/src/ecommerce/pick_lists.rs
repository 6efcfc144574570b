//! The warehouse's pick lists: for each open order, what was ordered and how
//! much of it is set aside. A multi-stream read model: the lines come from
//! the order's events, the reservations from each product's inventory
//! events (which name the order), so it projects [`ShopEvent`], the union of
//! both enums.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cqrskit::{BoxError, EventEnvelope, EventUnion, Query, QueryHandler, projector};

use super::inventory::{InventoryEvent, StockReleased, StockReserved};
use super::order::{OrderCancelled, OrderCreated, OrderEvent, OrderShipped};

/// Every event the shop's aggregates store, for read models and process
/// managers that need more than one of them.
#[derive(Clone, Debug, PartialEq, Eq, EventUnion)]
pub enum ShopEvent {
    /// An order's event.
    Order(OrderEvent),
    /// A product's inventory event.
    Inventory(InventoryEvent),
}

type Envelope = EventEnvelope<ShopEvent>;

/// One product of an order, as the warehouse picks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PickLine {
    /// Items ordered.
    pub ordered: u32,
    /// Items set aside for the order.
    pub reserved: u32,
}

/// An open order's pick list: its lines by sku.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PickList {
    /// The lines, by sku.
    pub lines: BTreeMap<String, PickLine>,
}

impl PickList {
    /// Whether every line is fully set aside: the order can be picked.
    pub fn ready(&self) -> bool {
        self.lines
            .values()
            .all(|line| line.reserved >= line.ordered)
    }
}

/// The pick lists of every order not yet shipped or cancelled.
#[derive(Debug, Default)]
pub struct PickLists {
    open: Mutex<BTreeMap<String, PickList>>,
}

impl PickLists {
    // Each update is one field write or one insert: a panic cannot leave a
    // list half-updated, so a poisoned lock is still good to read.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, PickList>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the reservation of `sku` (the inventory event's stream) on
    /// `order_id`'s list, if the order is open. Reservations of an order
    /// this model never saw created are not its business (an order shipped
    /// or cancelled before, or older than the shop's orders).
    fn reservation(
        &self,
        order_id: &str,
        envelope: &Envelope,
        change: impl FnOnce(u32) -> Option<u32>,
    ) -> Result<(), BoxError> {
        let sku = &envelope.stream.aggregate_id;
        let mut open = self.lock();
        let Some(line) = open
            .get_mut(order_id)
            .and_then(|list| list.lines.get_mut(sku))
        else {
            return Ok(());
        };
        line.reserved = change(line.reserved).ok_or_else(|| {
            format!(
                "the reservation of {sku} for order {order_id} leaves its range at {}",
                envelope.event_type
            )
        })?;
        Ok(())
    }
}

#[projector(event = ShopEvent, name = "pick_lists")]
impl PickLists {
    #[project]
    fn created(&self, event: &OrderCreated, envelope: &Envelope) -> Result<(), BoxError> {
        let mut list = PickList::default();
        for line in &event.lines {
            let entry = list.lines.entry(line.sku.clone()).or_default();
            entry.ordered = entry.ordered.checked_add(line.quantity).ok_or_else(|| {
                format!(
                    "order {} asks for more of {} than a count holds",
                    envelope.stream.aggregate_id, line.sku
                )
            })?;
        }
        self.lock()
            .insert(envelope.stream.aggregate_id.clone(), list);
        Ok(())
    }

    #[project]
    fn reserved(&self, event: &StockReserved, envelope: &Envelope) -> Result<(), BoxError> {
        self.reservation(&event.order_id, envelope, |reserved| {
            reserved.checked_add(event.quantity)
        })
    }

    #[project]
    fn released(&self, event: &StockReleased, envelope: &Envelope) -> Result<(), BoxError> {
        self.reservation(&event.order_id, envelope, |reserved| {
            reserved.checked_sub(event.quantity)
        })
    }

    #[project]
    fn shipped(&self, _: &OrderShipped, envelope: &Envelope) {
        self.lock().remove(&envelope.stream.aggregate_id);
    }

    #[project]
    fn cancelled(&self, _: &OrderCancelled, envelope: &Envelope) {
        self.lock().remove(&envelope.stream.aggregate_id);
    }
}

/// The pick list of one order: `None` once it shipped or was cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickListOf {
    /// The order.
    pub order_id: String,
}

impl Query for PickListOf {
    type Output = Option<PickList>;
}

impl QueryHandler<PickListOf> for PickLists {
    type Error = Infallible;

    async fn handle(&self, query: PickListOf) -> Result<Option<PickList>, Infallible> {
        Ok(self.lock().get(&query.order_id).cloned())
    }
}

/// The orders whose every line is set aside, by id: what the warehouse can
/// pick now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyToPick;

impl Query for ReadyToPick {
    type Output = Vec<String>;
}

impl QueryHandler<ReadyToPick> for PickLists {
    type Error = Infallible;

    async fn handle(&self, _: ReadyToPick) -> Result<Vec<String>, Infallible> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, list)| list.ready())
            .map(|(order_id, _)| order_id.clone())
            .collect())
    }
}
