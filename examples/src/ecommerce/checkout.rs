//! Checkout: a workflow over two aggregates that must answer the caller
//! now. Step one reserves stock on each product (and answers "no" at once
//! when one is short, giving back what it reserved); step two creates the
//! order. A process that dies between the two would leave stock reserved
//! for an order that never comes, so step one first schedules a deadline:
//! [`AbandonCheckout`] on the order, due after [`CHECKOUT_HOLD`]. Step two
//! cancels it.
//!
//! Crash-safe because both the deadline's command and step two go to the
//! *order*: whichever comes first wins on the order's stream. If the
//! deadline wins, the order id is spent (`CheckoutAbandoned`), the
//! fulfilment process manager releases the stock, and a late step two is
//! refused; if step two wins, the deadline's command is refused and
//! nothing is released.

use std::sync::Arc;
use std::time::Duration;

use cqrskit::deadline::{Clock, Deadline, DeadlineStore};
use cqrskit::{Aggregate, CommandError, CommandOutcome, CommandPipeline, StreamId};

use super::inventory::{Inventory, InventoryError, ReleaseStock, ReserveStock};
use super::order::{AbandonCheckout, CreateOrder, Order, OrderError, OrderEvent, OrderLine};

/// The name checkout deadlines are scheduled and delivered under.
pub const CHECKOUT_TIMEOUT: &str = "order.checkout-abandoned";

/// How long a checkout's reservation waits for its order.
pub const CHECKOUT_HOLD: Duration = Duration::from_secs(2 * 60);

/// Why a checkout said no.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// A product has too little stock; nothing stays reserved.
    #[error("{sku}: {source}")]
    OutOfStock {
        /// The product.
        sku: String,
        /// What the stock said.
        #[source]
        source: InventoryError,
    },
    /// The order refused (it exists, or its checkout was abandoned).
    #[error(transparent)]
    Order(#[from] OrderError),
    /// A store failed; the deadline cleans up whatever was reserved.
    #[error("the checkout failed: {0}")]
    Failed(String),
}

/// The checkout workflow over the shop's pipelines and deadlines.
pub struct Checkout {
    pub(super) orders: Arc<CommandPipeline<Order>>,
    pub(super) inventory: Arc<CommandPipeline<Inventory>>,
    pub(super) deadlines: Arc<dyn DeadlineStore>,
    pub(super) clock: Arc<dyn Clock>,
}

fn failed(error: impl std::fmt::Display) -> CheckoutError {
    CheckoutError::Failed(error.to_string())
}

impl Checkout {
    /// Both steps: the order, created with its stock reserved, or why not.
    ///
    /// # Errors
    ///
    /// [`CheckoutError`].
    pub async fn place(
        &self,
        order_id: &str,
        customer_id: &str,
        lines: &[OrderLine],
    ) -> Result<CommandOutcome<OrderEvent>, CheckoutError> {
        self.reserve(order_id, lines).await?;
        self.complete(order_id, customer_id, lines).await
    }

    /// Step one: schedules the abandonment, then reserves every line; on a
    /// short product, gives back what it reserved and cancels the
    /// abandonment.
    ///
    /// # Errors
    ///
    /// [`CheckoutError::OutOfStock`], or a store failure.
    pub async fn reserve(&self, order_id: &str, lines: &[OrderLine]) -> Result<(), CheckoutError> {
        let abandon = AbandonCheckout {
            skus: lines.iter().map(|line| line.sku.clone()).collect(),
        };
        let due = self.clock.now()
            + cqrskit::chrono::Duration::from_std(CHECKOUT_HOLD).map_err(failed)?;
        let deadline = Deadline::new(CHECKOUT_TIMEOUT, order_stream(order_id), due, &abandon)
            .map_err(failed)?;
        self.deadlines.schedule(&deadline).await.map_err(failed)?;
        for (index, line) in lines.iter().enumerate() {
            let reserve = ReserveStock {
                order_id: order_id.to_owned(),
                quantity: line.quantity,
            };
            match self.inventory.execute(&line.sku, reserve).await {
                Ok(_) => {}
                Err(CommandError::Rejected(source)) => {
                    for reserved in &lines[..index] {
                        let release = ReleaseStock {
                            order_id: order_id.to_owned(),
                        };
                        self.inventory
                            .execute(&reserved.sku, release)
                            .await
                            .map_err(failed)?;
                    }
                    self.deadlines.cancel(deadline.id).await.map_err(failed)?;
                    return Err(CheckoutError::OutOfStock {
                        sku: line.sku.clone(),
                        source,
                    });
                }
                Err(other) => return Err(failed(other)),
            }
        }
        Ok(())
    }

    /// Step two: creates the order, then cancels the abandonment (were that
    /// lost, the abandonment is refused by the order).
    ///
    /// # Errors
    ///
    /// [`CheckoutError::Order`] when the checkout was abandoned meanwhile,
    /// or a store failure.
    pub async fn complete(
        &self,
        order_id: &str,
        customer_id: &str,
        lines: &[OrderLine],
    ) -> Result<CommandOutcome<OrderEvent>, CheckoutError> {
        let create = CreateOrder {
            customer_id: customer_id.to_owned(),
            lines: lines.to_vec(),
        };
        let created = match self.orders.execute(order_id, create).await {
            Ok(created) => created,
            Err(CommandError::Rejected(error)) => return Err(error.into()),
            Err(other) => return Err(failed(other)),
        };
        let deadline = Deadline::id_of(CHECKOUT_TIMEOUT, &order_stream(order_id));
        self.deadlines.cancel(deadline).await.map_err(failed)?;
        Ok(created)
    }
}

fn order_stream(order_id: &str) -> StreamId {
    StreamId::new(<Order as Aggregate>::TYPE, order_id)
}
