//! The whole shop wired together over one event store: the two aggregates'
//! pipelines, the fulfilment process manager and the read models, each
//! consuming the global log with its own checkpoint.

use std::sync::Arc;

use cqrskit::{CatchUpError, CommandPipeline, EventStore, Position, RetryPolicy, Subscription};

use super::{Fulfilment, Inventory, Order, OrdersByCustomer, StockLevels};

/// The shop over one store.
pub struct Shop {
    /// The store everything is written to.
    pub store: Arc<dyn EventStore>,
    /// Commands to orders.
    pub orders: Arc<CommandPipeline<Order>>,
    /// Commands to inventory.
    pub inventory: Arc<CommandPipeline<Inventory>>,
    /// The orders-by-customer read model.
    pub orders_by_customer: Arc<OrdersByCustomer>,
    /// The stock-levels read model.
    pub stock_levels: Arc<StockLevels>,
    fulfilment: Subscription<Fulfilment>,
    order_list: Subscription<OrdersByCustomer>,
    stock: Subscription<StockLevels>,
}

impl Shop {
    /// Wires the shop over `store`. Commands retry on conflicts: the process
    /// manager and customers may touch one order or product at once.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        let retry = RetryPolicy::retries(10);
        let orders = Arc::new(CommandPipeline::<Order>::new(store.clone(), ()).with_retry(retry));
        let inventory =
            Arc::new(CommandPipeline::<Inventory>::new(store.clone(), ()).with_retry(retry));
        let fulfilment = Arc::new(Fulfilment::new(orders.clone(), inventory.clone()));
        let orders_by_customer = Arc::new(OrdersByCustomer::default());
        let stock_levels = Arc::new(StockLevels::default());
        Self {
            fulfilment: Subscription::new(store.clone(), fulfilment),
            order_list: Subscription::new(store.clone(), orders_by_customer.clone()),
            stock: Subscription::new(store.clone(), stock_levels.clone()),
            store,
            orders,
            inventory,
            orders_by_customer,
            stock_levels,
        }
    }

    /// Lets the process manager and the read models consume every event
    /// appended so far, including those the process manager's own commands
    /// append, until a pass finds nothing new.
    ///
    /// # Errors
    ///
    /// A store failure, or a consumer's error naming the event.
    pub async fn process(&self) -> Result<(), CatchUpError> {
        loop {
            let before = self.checkpoints().await;
            self.fulfilment.poll().await?;
            self.order_list.poll().await?;
            self.stock.poll().await?;
            if self.checkpoints().await == before {
                return Ok(());
            }
        }
    }

    async fn checkpoints(&self) -> [Position; 3] {
        [
            self.fulfilment.checkpoint().await,
            self.order_list.checkpoint().await,
            self.stock.checkpoint().await,
        ]
    }
}
