//! The order: its lifecycle and the rules between its states.

use std::fmt;

use cqrskit::{Command, DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, in cents.
    pub unit_price: u64,
}

/// The total of `lines` in cents; `None` when it does not fit in a `u64`.
pub fn lines_total(lines: &[OrderLine]) -> Option<u64> {
    lines.iter().try_fold(0_u64, |total, line| {
        total.checked_add(line.unit_price.checked_mul(u64::from(line.quantity))?)
    })
}

/// The order was placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Who placed it.
    pub customer_id: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
}

/// Stock was reserved for every line; the order will be fulfilled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed;

/// The customer paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    /// How much, in cents.
    pub amount: u64,
}

/// The order left the warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped;

/// The customer received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered;

/// The order was cancelled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Why.
    pub reason: String,
    /// Whose order it was, for readers that count per customer. Absent
    /// from cancellations stored before it was added (they read as `None`).
    #[serde(default)]
    pub customer_id: Option<String>,
}

/// A checkout reserved stock for an order that was then never created (the
/// process died between the two steps, or took too long): the order id is
/// spent, and the stock of `skus` is released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutAbandoned {
    /// The products stock was reserved of.
    pub skus: Vec<String>,
}

/// Facts about an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum OrderEvent {
    /// See [`OrderCreated`].
    OrderCreated(OrderCreated),
    /// See [`OrderConfirmed`].
    OrderConfirmed(OrderConfirmed),
    /// See [`OrderPaid`].
    OrderPaid(OrderPaid),
    /// See [`OrderShipped`].
    OrderShipped(OrderShipped),
    /// See [`OrderDelivered`].
    OrderDelivered(OrderDelivered),
    /// See [`OrderCancelled`].
    OrderCancelled(OrderCancelled),
    /// See [`CheckoutAbandoned`].
    CheckoutAbandoned(CheckoutAbandoned),
}

/// Place an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOrder {
    /// Who places it.
    pub customer_id: String,
    /// What is ordered.
    pub lines: Vec<OrderLine>,
}

/// Confirm the order once its stock is reserved (sent by the fulfilment
/// process); confirming a confirmed order changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmOrder;

/// Pay for a confirmed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayOrder {
    /// How much, in cents: exactly the order's total.
    pub amount: u64,
}

/// Ship a paid order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipOrder;

/// Record the delivery of a shipped order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverOrder;

/// Cancel an order that has not been delivered; cancelling a cancelled order
/// changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    /// Why.
    pub reason: String,
}

/// Cancel an order that is still unpaid (the payment deadline's command):
/// refused once it is paid, shipped or delivered, so a payment that beats
/// the deadline keeps the order whatever the order of delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelUnpaidOrder {
    /// Why.
    pub reason: String,
}

/// Give up a checkout whose order was never created (the checkout
/// deadline's command): refused once the order exists, so a checkout that
/// completes as the deadline falls due keeps its order either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonCheckout {
    /// The products the checkout reserved stock of.
    pub skus: Vec<String>,
}

/// What can be asked of an order.
#[derive(Clone, Debug, PartialEq, Eq, Command)]
pub enum OrderCommand {
    /// See [`CreateOrder`]. It starts the order, so it is decided
    /// without a load.
    #[command(creates)]
    Create(CreateOrder),
    /// See [`ConfirmOrder`].
    Confirm(ConfirmOrder),
    /// See [`PayOrder`].
    Pay(PayOrder),
    /// See [`ShipOrder`].
    Ship(ShipOrder),
    /// See [`DeliverOrder`].
    Deliver(DeliverOrder),
    /// See [`CancelOrder`].
    Cancel(CancelOrder),
    /// See [`CancelUnpaidOrder`].
    CancelUnpaid(CancelUnpaidOrder),
    /// See [`AbandonCheckout`].
    AbandonCheckout(AbandonCheckout),
}

/// Where an order is in its lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed yet.
    #[default]
    None,
    /// Placed, waiting for stock.
    Created,
    /// Stock reserved, waiting for payment.
    Confirmed,
    /// Paid, waiting for shipping.
    Paid,
    /// On its way.
    Shipped,
    /// Received.
    Delivered,
    /// Cancelled.
    Cancelled,
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why an order refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// `CreateOrder` for an order that exists.
    #[error("the order already exists")]
    AlreadyExists,
    /// An order without lines, or a line of quantity 0.
    #[error("an order needs at least one line, each of at least one item")]
    Empty,
    /// The command does not apply in the order's status.
    #[error("cannot {action} an order that is {status}")]
    InvalidTransition {
        /// What was asked.
        action: &'static str,
        /// Where the order is.
        status: OrderStatus,
    },
    /// A payment of the wrong amount.
    #[error("the order totals {total}, the payment was {paid}")]
    WrongAmount {
        /// The order's total.
        total: u64,
        /// What was paid.
        paid: u64,
    },
    /// Lines whose total, in cents, does not fit in a `u64`.
    #[error("the order's total exceeds the largest amount, {} cents", u64::MAX)]
    TotalOverflow,
}

/// An order's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Its status.
    pub status: OrderStatus,
    /// Who placed it.
    pub customer_id: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
}

impl Order {
    /// The total in cents.
    pub fn total(&self) -> u64 {
        // `create` refuses lines whose total does not fit, so only events
        // written by other code reach the fallback; they must still load, and
        // saturating never shows a wrapped total small enough to pay.
        lines_total(&self.lines).unwrap_or(u64::MAX)
    }

    /// Cancels the order if it is in one of `allowed`; a cancelled order
    /// stays as it is.
    fn cancel_if(&self, action: &'static str, allowed: &[OrderStatus], reason: &str) -> Decision {
        if self.status == OrderStatus::Cancelled {
            return Ok(vec![]);
        }
        self.expect(action, allowed)?;
        Ok(vec![
            OrderCancelled {
                reason: reason.to_owned(),
                customer_id: Some(self.customer_id.clone()),
            }
            .into(),
        ])
    }

    fn expect(&self, action: &'static str, allowed: &[OrderStatus]) -> Result<(), OrderError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(OrderError::InvalidTransition {
                action,
                status: self.status,
            })
        }
    }
}

type Decision = Result<Vec<OrderEvent>, OrderError>;

#[aggregate(type = "order", command = OrderCommand, event = OrderEvent, error = OrderError)]
impl Order {
    #[command]
    fn create(&self, command: &CreateOrder) -> Decision {
        if self.status != OrderStatus::None {
            return Err(OrderError::AlreadyExists);
        }
        if command.lines.is_empty() || command.lines.iter().any(|line| line.quantity == 0) {
            return Err(OrderError::Empty);
        }
        if lines_total(&command.lines).is_none() {
            return Err(OrderError::TotalOverflow);
        }
        Ok(vec![
            OrderCreated {
                customer_id: command.customer_id.clone(),
                lines: command.lines.clone(),
            }
            .into(),
        ])
    }

    #[command]
    fn confirm(&self, _: &ConfirmOrder) -> Decision {
        if self.status == OrderStatus::Confirmed {
            return Ok(vec![]);
        }
        self.expect("confirm", &[OrderStatus::Created])?;
        Ok(vec![OrderConfirmed.into()])
    }

    #[command]
    fn pay(&self, command: &PayOrder) -> Decision {
        self.expect("pay", &[OrderStatus::Confirmed])?;
        if command.amount != self.total() {
            return Err(OrderError::WrongAmount {
                total: self.total(),
                paid: command.amount,
            });
        }
        Ok(vec![
            OrderPaid {
                amount: command.amount,
            }
            .into(),
        ])
    }

    #[command]
    fn ship(&self, _: &ShipOrder) -> Decision {
        self.expect("ship", &[OrderStatus::Paid])?;
        Ok(vec![OrderShipped.into()])
    }

    #[command]
    fn deliver(&self, _: &DeliverOrder) -> Decision {
        self.expect("deliver", &[OrderStatus::Shipped])?;
        Ok(vec![OrderDelivered.into()])
    }

    #[command]
    fn cancel_unpaid(&self, command: &CancelUnpaidOrder) -> Decision {
        self.cancel_if(
            "cancel unpaid",
            &[OrderStatus::Created, OrderStatus::Confirmed],
            &command.reason,
        )
    }

    #[command]
    fn abandon_checkout(&self, command: &AbandonCheckout) -> Decision {
        self.expect("abandon the checkout of", &[OrderStatus::None])?;
        Ok(vec![
            CheckoutAbandoned {
                skus: command.skus.clone(),
            }
            .into(),
        ])
    }

    #[command]
    fn cancel(&self, command: &CancelOrder) -> Decision {
        self.cancel_if(
            "cancel",
            &[
                OrderStatus::Created,
                OrderStatus::Confirmed,
                OrderStatus::Paid,
            ],
            &command.reason,
        )
    }

    #[apply]
    fn created(&mut self, event: &OrderCreated) {
        self.status = OrderStatus::Created;
        self.customer_id = event.customer_id.clone();
        self.lines = event.lines.clone();
    }

    #[apply]
    fn confirmed(&mut self, _: &OrderConfirmed) {
        self.status = OrderStatus::Confirmed;
    }

    #[apply]
    fn paid(&mut self, _: &OrderPaid) {
        self.status = OrderStatus::Paid;
    }

    #[apply]
    fn shipped(&mut self, _: &OrderShipped) {
        self.status = OrderStatus::Shipped;
    }

    #[apply]
    fn delivered(&mut self, _: &OrderDelivered) {
        self.status = OrderStatus::Delivered;
    }

    #[apply]
    fn abandoned(&mut self, _: &CheckoutAbandoned) {
        self.status = OrderStatus::Cancelled;
    }

    #[apply]
    fn cancelled(&mut self, _: &OrderCancelled) {
        self.status = OrderStatus::Cancelled;
    }
}
