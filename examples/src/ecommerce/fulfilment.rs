//! The fulfilment process manager: it reacts to order events by sending
//! commands to inventory and orders.
//!
//! - an order is created: reserve stock for each line; when every line is
//!   reserved, confirm the order; when one cannot be, give back what was
//!   reserved for the order (compensation) and cancel it;
//! - an order is cancelled, or its checkout abandoned: release its stock.
//!
//! It is a projector whose effect is commands, so it runs wherever projectors
//! run, with its own checkpoint. Delivery is at-least-once: after a crash it
//! may see an event again. Every command it sends is idempotent (reserving
//! twice for one order, confirming a confirmed order, releasing what is not
//! reserved: all change nothing), so seeing an event twice is harmless.

use std::sync::Arc;

use cqrskit::{BoxError, CommandError, CommandPipeline, EventEnvelope, projector};

use super::inventory::{Inventory, ReleaseStock, ReserveStock};
use super::order::{
    CancelOrder, CheckoutAbandoned, ConfirmOrder, Order, OrderCancelled, OrderCreated, OrderError,
    OrderEvent,
};

type Envelope = EventEnvelope<OrderEvent>;

/// Reserves stock for new orders and releases it for cancelled ones.
pub struct Fulfilment {
    orders: Arc<CommandPipeline<Order>>,
    inventory: Arc<CommandPipeline<Inventory>>,
}

impl Fulfilment {
    /// A process manager sending its commands through these pipelines.
    pub fn new(
        orders: Arc<CommandPipeline<Order>>,
        inventory: Arc<CommandPipeline<Inventory>>,
    ) -> Self {
        Self { orders, inventory }
    }

    async fn release_all(
        &self,
        order_id: &str,
        skus: &[&str],
        cause: &Envelope,
    ) -> Result<(), BoxError> {
        for sku in skus {
            let release = ReleaseStock {
                order_id: order_id.to_owned(),
            };
            self.inventory
                .execute_caused_by(sku, release, cause)
                .await?;
        }
        Ok(())
    }
}

#[projector(event = OrderEvent, name = "order_fulfilment")]
impl Fulfilment {
    #[project]
    async fn order_created(
        &self,
        event: &OrderCreated,
        envelope: &Envelope,
    ) -> Result<(), BoxError> {
        let order_id = &envelope.stream.aggregate_id;
        let mut reserved: Vec<&str> = Vec::new();
        for line in &event.lines {
            let reserve = ReserveStock {
                order_id: order_id.clone(),
                quantity: line.quantity,
            };
            match self
                .inventory
                .execute_caused_by(&line.sku, reserve, envelope)
                .await
            {
                Ok(_) => reserved.push(&line.sku),
                Err(CommandError::Rejected(refusal)) => {
                    // Compensate: nothing stays reserved for an order that will not ship.
                    self.release_all(order_id, &reserved, envelope).await?;
                    let cancel = CancelOrder {
                        reason: format!("{}: {refusal}", line.sku),
                    };
                    self.orders
                        .execute_caused_by(order_id, cancel, envelope)
                        .await?;
                    return Ok(());
                }
                // A store failure: the runner retries the event; the
                // reservations already made are not made twice.
                Err(other) => return Err(other.into()),
            }
        }
        match self
            .orders
            .execute_caused_by(order_id, ConfirmOrder, envelope)
            .await
        {
            // Cancelled meanwhile: its cancellation releases the stock.
            Ok(_) | Err(CommandError::Rejected(OrderError::InvalidTransition { .. })) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    #[project]
    async fn checkout_abandoned(
        &self,
        event: &CheckoutAbandoned,
        envelope: &Envelope,
    ) -> Result<(), BoxError> {
        let skus: Vec<&str> = event.skus.iter().map(String::as_str).collect();
        self.release_all(&envelope.stream.aggregate_id, &skus, envelope)
            .await
    }

    #[project]
    async fn order_cancelled(
        &self,
        _event: &OrderCancelled,
        envelope: &Envelope,
    ) -> Result<(), BoxError> {
        let order_id = &envelope.stream.aggregate_id;
        let order = self.orders.load_at(order_id, envelope.version).await?.state;
        let skus: Vec<&str> = order.lines.iter().map(|line| line.sku.as_str()).collect();
        self.release_all(order_id, &skus, envelope).await
    }
}
