//! The whole shop wired together over one event store: the two aggregates'
//! pipelines, the fulfilment and payment-timeout process managers and the
//! read models (the pick lists reading both aggregates), each consuming the global log with its own checkpoint, and
//! the runner that delivers the payment deadlines.

use std::sync::Arc;

use cqrskit::deadline::{Clock, DeadlineRunner, DeadlineStore, InMemoryDeadlines, SystemClock};
use cqrskit::document::InMemoryDocuments;
use cqrskit::window::InMemoryWindows;
use cqrskit::{
    CommandPipeline, EventStore, InMemoryRunner, PipelineOptions, Position, RetryPolicy, StoreError,
};

use super::{
    AbandonCheckout, CHECKOUT_TIMEOUT, CancelUnpaidOrder, Cancellations, Checkout, Fulfilment,
    Inventory, Order, OrdersByCustomer, PAYMENT_TIMEOUT, PaymentTimeout, PickList, PickLists,
    Revenue, StockLevels, Trends,
};

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
    /// The warehouse's pick lists (orders and inventory together): a
    /// document read model, queried through [`PickLists`].
    pub pick_lists: PickLists,
    /// Revenue per 5 minutes and cancellations per customer over 15:
    /// windowed read models, queried through [`Trends`].
    pub trends: Trends,
    /// The payment and checkout deadlines.
    pub deadlines: Arc<dyn DeadlineStore>,
    clock: Arc<dyn Clock>,
    fulfilment: InMemoryRunner<Fulfilment>,
    payment_timeout: InMemoryRunner<PaymentTimeout>,
    deadline_runner: DeadlineRunner,
    order_list: InMemoryRunner<OrdersByCustomer>,
    stock: InMemoryRunner<StockLevels>,
    picking: InMemoryRunner<InMemoryDocuments<PickList>>,
    revenue: InMemoryRunner<InMemoryWindows<Revenue>>,
    cancellations: InMemoryRunner<InMemoryWindows<Cancellations>>,
}

impl Shop {
    /// Wires the shop over `store`, with its deadlines in memory on the
    /// system's clock. Commands retry on conflicts: the process managers
    /// and customers may touch one order or product at once.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self::with_deadlines(
            store,
            Arc::new(InMemoryDeadlines::new()),
            Arc::new(SystemClock),
        )
    }

    /// Wires the shop over `store`, keeping its deadlines in `deadlines`
    /// (durable: `PostgresEventStore::deadlines`; their store's clock
    /// decides when they fall due) and scheduling the checkout holds by
    /// `clock` (a `ManualClock` in tests, shared with the deadlines).
    pub fn with_deadlines(
        store: Arc<dyn EventStore>,
        deadlines: Arc<dyn DeadlineStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let retry = RetryPolicy::retries(10);
        let orders = Arc::new(
            CommandPipeline::<Order>::new(store.clone(), ())
                .with_options(PipelineOptions::default().retry(retry)),
        );
        let inventory = Arc::new(
            CommandPipeline::<Inventory>::new(store.clone(), ())
                .with_options(PipelineOptions::default().retry(retry)),
        );
        let fulfilment = Arc::new(Fulfilment::new(orders.clone(), inventory.clone()));
        let orders_by_customer = Arc::new(OrdersByCustomer::default());
        let stock_levels = Arc::new(StockLevels::default());
        let (pick_lists, pick_list_documents) = PickLists::in_memory();
        let (trends, trend_windows) = Trends::in_memory();
        let payment_timeout = Arc::new(PaymentTimeout::new(deadlines.clone()));
        let deadline_runner = DeadlineRunner::new(deadlines.clone())
            .route::<Order, CancelUnpaidOrder>(PAYMENT_TIMEOUT, orders.clone())
            .route::<Order, AbandonCheckout>(CHECKOUT_TIMEOUT, orders.clone());
        Self {
            fulfilment: InMemoryRunner::new(store.clone(), fulfilment),
            payment_timeout: InMemoryRunner::new(store.clone(), payment_timeout),
            deadline_runner,
            deadlines,
            clock,
            order_list: InMemoryRunner::new(store.clone(), orders_by_customer.clone()),
            stock: InMemoryRunner::new(store.clone(), stock_levels.clone()),
            picking: InMemoryRunner::new(store.clone(), pick_list_documents),
            revenue: InMemoryRunner::new(store.clone(), trend_windows.revenue),
            cancellations: InMemoryRunner::new(store.clone(), trend_windows.cancellations),
            store,
            orders,
            inventory,
            orders_by_customer,
            stock_levels,
            pick_lists,
            trends,
        }
    }

    /// The checkout workflow (see [`Checkout`]) over this shop.
    pub fn checkout(&self) -> Checkout {
        Checkout {
            orders: self.orders.clone(),
            inventory: self.inventory.clone(),
            deadlines: self.deadlines.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Lets the process managers and the read models consume every event
    /// appended so far, including those their own commands append, and
    /// delivers the deadlines due on the clock, until a pass finds nothing
    /// new.
    ///
    /// # Errors
    ///
    /// A store failure, or a consumer's error naming the event.
    pub async fn process(&self) -> Result<(), StoreError> {
        loop {
            let before = self.checkpoints().await;
            self.fulfilment.poll().await?;
            self.payment_timeout.poll().await?;
            self.order_list.poll().await?;
            self.stock.poll().await?;
            self.picking.poll().await?;
            self.revenue.poll().await?;
            self.cancellations.poll().await?;
            let delivered = self.deadline_runner.deliver_due().await?;
            if self.checkpoints().await == before && delivered.done.is_empty() {
                return Ok(());
            }
        }
    }

    async fn checkpoints(&self) -> [Position; 7] {
        [
            self.fulfilment.checkpoint().await,
            self.payment_timeout.checkpoint().await,
            self.order_list.checkpoint().await,
            self.stock.checkpoint().await,
            self.picking.checkpoint().await,
            self.revenue.checkpoint().await,
            self.cancellations.checkpoint().await,
        ]
    }
}
