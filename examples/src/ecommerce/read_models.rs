//! The shop's read side: orders by customer, and stock levels.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cqrskit::{BoxError, EventEnvelope, Query, QueryHandler, projector};

use super::inventory::{InventoryEvent, StockAdded, StockReleased, StockReserved};
use super::order::{
    OrderCancelled, OrderConfirmed, OrderCreated, OrderDelivered, OrderEvent, OrderPaid,
    OrderShipped, OrderStatus, lines_total,
};

/// One order as a customer's order list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderSummary {
    /// The order id.
    pub order_id: String,
    /// Its status.
    pub status: OrderStatus,
    /// Its total in cents.
    pub total: u64,
}

#[derive(Debug, Default)]
struct Orders {
    by_customer: BTreeMap<String, BTreeMap<String, OrderSummary>>,
    customer_of: HashMap<String, String>,
}

/// Every customer's orders.
#[derive(Debug, Default)]
pub struct OrdersByCustomer {
    orders: Mutex<Orders>,
}

impl OrdersByCustomer {
    // Each update is a single insert or field write: a panic cannot leave a
    // row half-updated, so a poisoned lock is still good to read.
    fn lock(&self) -> MutexGuard<'_, Orders> {
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_status(&self, envelope: &EventEnvelope<OrderEvent>, status: OrderStatus) {
        let mut orders = self.lock();
        let order_id = &envelope.stream.aggregate_id;
        let Some(customer) = orders.customer_of.get(order_id).cloned() else {
            return;
        };
        if let Some(summary) = orders
            .by_customer
            .get_mut(&customer)
            .and_then(|list| list.get_mut(order_id))
        {
            summary.status = status;
        }
    }
}

#[projector(event = OrderEvent, name = "orders_by_customer")]
impl OrdersByCustomer {
    #[project]
    fn created(
        &self,
        event: &OrderCreated,
        envelope: &EventEnvelope<OrderEvent>,
    ) -> Result<(), BoxError> {
        let order_id = envelope.stream.aggregate_id.clone();
        // `Order::create` refuses such lines; a stored event with them still
        // must not panic here nor show a wrapped total.
        let total = lines_total(&event.lines)
            .ok_or_else(|| format!("the total of order {order_id} does not fit in a u64"))?;
        let mut orders = self.lock();
        orders
            .customer_of
            .insert(order_id.clone(), event.customer_id.clone());
        orders
            .by_customer
            .entry(event.customer_id.clone())
            .or_default()
            .insert(
                order_id.clone(),
                OrderSummary {
                    order_id,
                    status: OrderStatus::Created,
                    total,
                },
            );
        Ok(())
    }

    #[project]
    fn confirmed(&self, _: &OrderConfirmed, envelope: &EventEnvelope<OrderEvent>) {
        self.set_status(envelope, OrderStatus::Confirmed);
    }

    #[project]
    fn paid(&self, _: &OrderPaid, envelope: &EventEnvelope<OrderEvent>) {
        self.set_status(envelope, OrderStatus::Paid);
    }

    #[project]
    fn shipped(&self, _: &OrderShipped, envelope: &EventEnvelope<OrderEvent>) {
        self.set_status(envelope, OrderStatus::Shipped);
    }

    #[project]
    fn delivered(&self, _: &OrderDelivered, envelope: &EventEnvelope<OrderEvent>) {
        self.set_status(envelope, OrderStatus::Delivered);
    }

    #[project]
    fn cancelled(&self, _: &OrderCancelled, envelope: &EventEnvelope<OrderEvent>) {
        self.set_status(envelope, OrderStatus::Cancelled);
    }
}

/// The orders of one customer, by order id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdersOfCustomer {
    /// The customer.
    pub customer_id: String,
}

impl Query for OrdersOfCustomer {
    type Output = Vec<OrderSummary>;
}

impl QueryHandler<OrdersOfCustomer> for OrdersByCustomer {
    type Error = Infallible;

    async fn handle(&self, query: OrdersOfCustomer) -> Result<Vec<OrderSummary>, Infallible> {
        Ok(self
            .lock()
            .by_customer
            .get(&query.customer_id)
            .map(|orders| orders.values().cloned().collect())
            .unwrap_or_default())
    }
}

/// A product's stock as the shop shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockLevel {
    /// Items that can still be ordered.
    pub available: u32,
    /// Items set aside for orders.
    pub reserved: u32,
}

/// Stock levels of every product.
#[derive(Debug, Default)]
pub struct StockLevels {
    levels: Mutex<BTreeMap<String, StockLevel>>,
}

impl StockLevels {
    /// Replaces the product's level by `change` of it; a count out of range
    /// (`None`) leaves the level as it was and fails the event. The inventory
    /// never decides such an event, but a count that wrapped would misreport
    /// the stock without a word.
    fn update(
        &self,
        envelope: &EventEnvelope<InventoryEvent>,
        change: impl FnOnce(StockLevel) -> Option<StockLevel>,
    ) -> Result<(), BoxError> {
        let mut levels = self.levels.lock().unwrap_or_else(PoisonError::into_inner);
        let sku = &envelope.stream.aggregate_id;
        let level = levels.get(sku).copied().unwrap_or_default();
        let changed = change(level).ok_or_else(|| {
            format!(
                "the stock of {sku} leaves the range of its counts at {}",
                envelope.event_type
            )
        })?;
        levels.insert(sku.clone(), changed);
        Ok(())
    }

    /// Every product's level, by sku.
    pub fn all(&self) -> BTreeMap<String, StockLevel> {
        self.levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[projector(event = InventoryEvent, name = "stock_levels")]
impl StockLevels {
    #[project]
    fn added(
        &self,
        event: &StockAdded,
        envelope: &EventEnvelope<InventoryEvent>,
    ) -> Result<(), BoxError> {
        self.update(envelope, |level| {
            Some(StockLevel {
                available: level.available.checked_add(event.quantity)?,
                ..level
            })
        })
    }

    #[project]
    fn reserved(
        &self,
        event: &StockReserved,
        envelope: &EventEnvelope<InventoryEvent>,
    ) -> Result<(), BoxError> {
        self.update(envelope, |level| {
            Some(StockLevel {
                available: level.available.checked_sub(event.quantity)?,
                reserved: level.reserved.checked_add(event.quantity)?,
            })
        })
    }

    #[project]
    fn released(
        &self,
        event: &StockReleased,
        envelope: &EventEnvelope<InventoryEvent>,
    ) -> Result<(), BoxError> {
        self.update(envelope, |level| {
            Some(StockLevel {
                available: level.available.checked_add(event.quantity)?,
                reserved: level.reserved.checked_sub(event.quantity)?,
            })
        })
    }
}

/// The stock level of one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLevelOf {
    /// The product.
    pub sku: String,
}

impl Query for StockLevelOf {
    type Output = Option<StockLevel>;
}

impl QueryHandler<StockLevelOf> for StockLevels {
    type Error = Infallible;

    async fn handle(&self, query: StockLevelOf) -> Result<Option<StockLevel>, Infallible> {
        Ok(self.all().get(&query.sku).copied())
    }
}
