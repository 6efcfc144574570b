//! The shop's trends over time, as windowed read models written without
//! SQL: revenue per 5-minute window, and each customer's cancellations over
//! a sliding 15 minutes (15-minute windows starting every minute). Both
//! take the time the store recorded each event, and run in memory
//! ([`InMemoryWindows`]) or in PostgreSQL (`PgWindows`); [`Trends`] answers
//! from either.
//!
//! Neither is keyed by its events' stream (one key for the whole shop, and
//! the customer of each order), so each runs unpartitioned: a partitioned
//! runner refuses them.

use std::sync::Arc;
use std::time::Duration;

use cqrskit::chrono::{DateTime, Utc};
use cqrskit::window::{InMemoryWindows, Window, WindowQueries, WindowSpec};
use cqrskit::{BoxError, Query, QueryHandler, StoreError, document};
use serde::{Deserialize, Serialize};

use super::order::{OrderCancelled, OrderEvent, OrderPaid};

/// The key of the shop-wide revenue windows.
pub const SHOP: &str = "shop";

/// What one 5-minute window took in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    /// Payments received.
    pub payments: u32,
    /// Their total, in cents.
    pub cents: u64,
}

#[document(event = OrderEvent, name = "revenue_5m")]
impl Revenue {
    /// Every payment counts towards the whole shop's windows.
    #[id]
    fn shop(_: &OrderPaid) -> &'static str {
        SHOP
    }

    #[apply]
    fn paid(&mut self, event: &OrderPaid) -> Result<(), BoxError> {
        self.payments += 1;
        self.cents = self
            .cents
            .checked_add(event.amount)
            .ok_or("a window's revenue leaves the range of a u64")?;
        Ok(())
    }
}

/// Revenue per 5 minutes; a payment recorded up to a minute behind the
/// latest still counts in its window.
pub fn revenue_windows() -> WindowSpec<OrderEvent> {
    WindowSpec::tumbling(Duration::from_secs(300))
        .expect("5 minutes is a valid size")
        .allowed_lateness(Duration::from_secs(60))
}

/// A customer's cancellations within one 15-minute window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellations {
    /// Orders cancelled.
    pub count: u32,
}

#[document(event = OrderEvent, name = "cancellations_15m")]
impl Cancellations {
    /// The customer whose order it was; cancellations stored before the
    /// event named one count for nobody.
    #[id]
    fn customer(event: &OrderCancelled) -> Option<&str> {
        event.customer_id.as_deref()
    }

    #[apply]
    fn cancelled(&mut self, _: &OrderCancelled) {
        self.count += 1;
    }
}

/// Cancellations over 15 minutes, sampled every minute.
pub fn cancellation_windows() -> WindowSpec<OrderEvent> {
    WindowSpec::hopping(Duration::from_secs(900), Duration::from_secs(60))
        .expect("15 minutes every minute is valid")
}

/// The trends' queries, over the windows of any store.
#[derive(Clone)]
pub struct Trends {
    revenue: Arc<dyn WindowQueries<Revenue>>,
    cancellations: Arc<dyn WindowQueries<Cancellations>>,
}

/// The trends' read models in memory, to run.
pub struct TrendWindows {
    /// Revenue per 5 minutes.
    pub revenue: Arc<InMemoryWindows<Revenue>>,
    /// Cancellations per customer over 15 minutes.
    pub cancellations: Arc<InMemoryWindows<Cancellations>>,
}

impl Trends {
    /// The queries over the windows of a store (`PgWindows` run by
    /// projection runners, or in memory).
    pub fn new(
        revenue: Arc<dyn WindowQueries<Revenue>>,
        cancellations: Arc<dyn WindowQueries<Cancellations>>,
    ) -> Self {
        Self {
            revenue,
            cancellations,
        }
    }

    /// The queries over new, empty windows in memory, and those windows.
    pub fn in_memory() -> (Self, TrendWindows) {
        let windows = TrendWindows {
            revenue: Arc::new(InMemoryWindows::new(revenue_windows())),
            cancellations: Arc::new(InMemoryWindows::new(cancellation_windows())),
        };
        (
            Self::new(windows.revenue.clone(), windows.cancellations.clone()),
            windows,
        )
    }
}

/// The shop's revenue windows that start in `[from, to)`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevenueBetween {
    /// The first instant.
    pub from: DateTime<Utc>,
    /// The instant after the last.
    pub to: DateTime<Utc>,
}

impl Query for RevenueBetween {
    type Output = Vec<Window<Revenue>>;
}

impl QueryHandler<RevenueBetween> for Trends {
    type Error = StoreError;

    async fn handle(&self, query: RevenueBetween) -> Result<Vec<Window<Revenue>>, StoreError> {
        self.revenue.windows(SHOP, query.from, query.to).await
    }
}

/// How many orders a customer cancelled in the 15 minutes up to `at`
/// (to the minute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentCancellations {
    /// The customer.
    pub customer_id: String,
    /// The instant the 15 minutes end at.
    pub at: DateTime<Utc>,
}

impl Query for RecentCancellations {
    type Output = u32;
}

impl QueryHandler<RecentCancellations> for Trends {
    type Error = StoreError;

    async fn handle(&self, query: RecentCancellations) -> Result<u32, StoreError> {
        // Of the windows holding `at`, the one starting first ends within a
        // minute after it: it holds the 15 minutes up to `at`. (Those
        // starting later hold less of the past.)
        let holding = self.cancellations.at(&query.customer_id, query.at).await?;
        Ok(holding.first().map_or(0, |window| window.value.count))
    }
}
