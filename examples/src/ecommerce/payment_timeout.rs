//! The payment deadline: an order not paid within [`PAYMENT_WINDOW`] of its
//! creation is cancelled (and the fulfilment process then releases its
//! stock).
//!
//! A process manager schedules a deadline when an order is created, and
//! cancels it when the order is paid or cancelled otherwise. The deadline's
//! id derives from its name and the order, so seeing an event twice
//! schedules or cancels nothing more; and its command,
//! [`CancelUnpaidOrder`], is refused by a paid order, so a payment that
//! arrives as the deadline falls due keeps the order either way.

use std::sync::Arc;
use std::time::Duration;

use cqrskit::deadline::{Deadline, DeadlineStore};
use cqrskit::{BoxError, EventEnvelope, projector};

use super::order::{CancelUnpaidOrder, OrderCancelled, OrderCreated, OrderEvent, OrderPaid};

/// The name the payment deadlines are scheduled and delivered under.
pub const PAYMENT_TIMEOUT: &str = "order.payment-timeout";

/// How long an order may stay unpaid.
pub const PAYMENT_WINDOW: Duration = Duration::from_secs(30 * 60);

type Envelope = EventEnvelope<OrderEvent>;

/// Schedules and cancels the payment deadlines.
pub struct PaymentTimeout {
    deadlines: Arc<dyn DeadlineStore>,
}

impl PaymentTimeout {
    /// A process manager keeping its deadlines in `deadlines`.
    pub fn new(deadlines: Arc<dyn DeadlineStore>) -> Self {
        Self { deadlines }
    }

    async fn forget(&self, envelope: &Envelope) -> Result<(), BoxError> {
        self.deadlines
            .cancel(Deadline::id_of(PAYMENT_TIMEOUT, &envelope.stream))
            .await?;
        Ok(())
    }
}

#[projector(event = OrderEvent, name = "order_payment_timeout")]
impl PaymentTimeout {
    #[project]
    async fn order_created(&self, _: &OrderCreated, envelope: &Envelope) -> Result<(), BoxError> {
        let cancel = CancelUnpaidOrder {
            reason: "not paid within 30 minutes".to_owned(),
        };
        let deadline = Deadline::new(
            PAYMENT_TIMEOUT,
            envelope.stream.clone(),
            envelope.recorded_at + cqrskit::chrono::Duration::from_std(PAYMENT_WINDOW)?,
            &cancel,
        )?
        .caused_by(envelope);
        self.deadlines.schedule(&deadline).await?;
        Ok(())
    }

    #[project]
    async fn order_paid(&self, _: &OrderPaid, envelope: &Envelope) -> Result<(), BoxError> {
        self.forget(envelope).await
    }

    #[project]
    async fn order_cancelled(
        &self,
        _: &OrderCancelled,
        envelope: &Envelope,
    ) -> Result<(), BoxError> {
        self.forget(envelope).await
    }
}
