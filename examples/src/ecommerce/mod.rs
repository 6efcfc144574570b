//! An e-commerce order system: orders with a lifecycle, inventory that
//! reserves and releases stock, a process manager that ties them together,
//! and read models for "orders by customer", "stock levels" and the
//! warehouse's pick lists (which read both aggregates' events).
//!
//! - [`order`]: the [`Order`] aggregate (created, confirmed, paid, shipped,
//!   delivered, cancelled; no shipping an unpaid order, no cancelling a
//!   delivered one);
//! - [`inventory`]: the [`Inventory`] aggregate, one per product;
//! - [`checkout`]: [`Checkout`], reserving and ordering in one answer,
//!   crash-safe through a deadline;
//! - [`fulfilment`]: the [`Fulfilment`] process manager;
//! - [`payment_timeout`]: [`PaymentTimeout`], which cancels an order not
//!   paid within 30 minutes with a deadline;
//! - [`read_models`]: [`OrdersByCustomer`] and [`StockLevels`];
//! - [`pick_lists`]: [`PickList`], a document read model over orders and
//!   inventory through the event union [`ShopEvent`], written without SQL
//!   and queried through [`PickLists`] on either store;
//! - [`trends`]: [`Trends`], revenue per 5-minute window and each
//!   customer's cancellations over a sliding 15 minutes, as windowed read
//!   models;
//! - [`shop`]: all of it wired over one store.

pub mod checkout;
pub mod fulfilment;
pub mod inventory;
pub mod order;
pub mod payment_timeout;
pub mod pick_lists;
pub mod read_models;
pub mod shop;
pub mod trends;

pub use checkout::{CHECKOUT_HOLD, CHECKOUT_TIMEOUT, Checkout, CheckoutError};
pub use fulfilment::Fulfilment;
pub use inventory::{
    AddStock, Inventory, InventoryCommand, InventoryError, InventoryEvent, ReleaseStock,
    ReserveStock, StockAdded, StockReleased, StockReserved,
};
pub use order::{
    AbandonCheckout, CancelOrder, CancelUnpaidOrder, CheckoutAbandoned, ConfirmOrder, CreateOrder,
    DeliverOrder, Order, OrderCancelled, OrderCommand, OrderConfirmed, OrderCreated,
    OrderDelivered, OrderError, OrderEvent, OrderLine, OrderPaid, OrderShipped, OrderStatus,
    PayOrder, ShipOrder,
};
pub use payment_timeout::{PAYMENT_TIMEOUT, PAYMENT_WINDOW, PaymentTimeout};
pub use pick_lists::{PickLine, PickList, PickListOf, PickLists, ReadyToPick, ShopEvent};
pub use read_models::{
    OrderSummary, OrdersByCustomer, OrdersOfCustomer, StockLevel, StockLevelOf, StockLevels,
};
pub use shop::Shop;
pub use trends::{
    Cancellations, RecentCancellations, Revenue, RevenueBetween, SHOP, Trends,
    cancellation_windows, revenue_windows,
};

#[cfg(test)]
mod tests;
