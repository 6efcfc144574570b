//! The warehouse's pick lists: for each open order, what was ordered and how
//! much of it is set aside. A document read model over two aggregates: the
//! lines come from the order's events, the reservations from each product's
//! inventory events (which name the order, so an `#[id]` method sends them
//! to its list), through [`ShopEvent`], the union of both enums. No SQL: the
//! same document runs in memory ([`InMemoryDocuments`]) and in PostgreSQL
//! (`PgDocuments`), and [`PickLists`] answers from either.

use std::collections::BTreeMap;
use std::sync::Arc;

use cqrskit::document::{Change, DocumentQueries, InMemoryDocuments};
use cqrskit::{BoxError, EventEnvelope, EventUnion, Query, QueryHandler, StoreError, document};
use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickLine {
    /// Items ordered.
    pub ordered: u32,
    /// Items set aside for the order.
    pub reserved: u32,
}

/// An open order's pick list (a document keyed by the order id): its lines
/// by sku. It exists from the order's creation until it ships or is
/// cancelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Changes the reservation of the line of `sku` (the inventory event's
    /// stream). A list without that line is left alone, and one that does
    /// not exist is not created: reservations of an order shipped or
    /// cancelled before, or older than the shop's orders, are not its
    /// business.
    fn reservation(
        &mut self,
        order_id: &str,
        envelope: &Envelope,
        change: impl FnOnce(u32) -> Option<u32>,
    ) -> Result<Change, BoxError> {
        let sku = &envelope.stream.aggregate_id;
        let Some(line) = self.lines.get_mut(sku) else {
            return Ok(Change::Unchanged);
        };
        line.reserved = change(line.reserved).ok_or_else(|| {
            format!(
                "the reservation of {sku} for order {order_id} leaves its range at {}",
                envelope.event_type
            )
        })?;
        Ok(Change::Updated)
    }
}

#[document(event = ShopEvent, name = "pick_lists")]
impl PickList {
    #[apply]
    fn created(&mut self, event: &OrderCreated, id: &str) -> Result<(), BoxError> {
        for line in &event.lines {
            let entry = self.lines.entry(line.sku.clone()).or_default();
            entry.ordered = entry.ordered.checked_add(line.quantity).ok_or_else(|| {
                format!(
                    "order {id} asks for more of {} than a count holds",
                    line.sku
                )
            })?;
        }
        Ok(())
    }

    #[id]
    fn reserved_for(event: &StockReserved) -> &str {
        &event.order_id
    }

    #[apply]
    fn reserved(&mut self, event: &StockReserved, envelope: &Envelope) -> Result<Change, BoxError> {
        self.reservation(&event.order_id, envelope, |reserved| {
            reserved.checked_add(event.quantity)
        })
    }

    #[id]
    fn released_for(event: &StockReleased) -> &str {
        &event.order_id
    }

    #[apply]
    fn released(&mut self, event: &StockReleased, envelope: &Envelope) -> Result<Change, BoxError> {
        self.reservation(&event.order_id, envelope, |reserved| {
            reserved.checked_sub(event.quantity)
        })
    }

    #[delete]
    fn shipped(&self, _: &OrderShipped) -> bool {
        true
    }

    #[delete]
    fn cancelled(&self, _: &OrderCancelled) -> bool {
        true
    }
}

/// The pick lists' queries, over the documents of any store.
#[derive(Clone)]
pub struct PickLists {
    documents: Arc<dyn DocumentQueries<PickList>>,
}

impl PickLists {
    /// The queries over `documents` (an [`InMemoryDocuments`], or
    /// `PgDocuments` run by a projection runner).
    pub fn new(documents: Arc<dyn DocumentQueries<PickList>>) -> Self {
        Self { documents }
    }

    /// The queries over a new, empty read model in memory, and that read
    /// model (to run).
    pub fn in_memory() -> (Self, Arc<InMemoryDocuments<PickList>>) {
        let documents = Arc::new(InMemoryDocuments::new());
        (Self::new(documents.clone()), documents)
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
    type Error = StoreError;

    async fn handle(&self, query: PickListOf) -> Result<Option<PickList>, StoreError> {
        let found = self.documents.load(&query.order_id).await?;
        Ok(found.map(|list| list.document))
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
    type Error = StoreError;

    async fn handle(&self, _: ReadyToPick) -> Result<Vec<String>, StoreError> {
        // Every open list: `{}` is contained in every document.
        let open = self.documents.matching(&serde_json::json!({})).await?;
        Ok(open
            .into_iter()
            .filter(|list| list.document.ready())
            .map(|list| list.id)
            .collect())
    }
}
