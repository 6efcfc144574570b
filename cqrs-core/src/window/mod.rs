//! Windowed read models: a document's aggregate kept per key and window of
//! event time (tumbling, hopping, session), with late events counted.
//!
//! A windowed read model is a `#[document]` (its `#[apply]` methods add an
//! event to a window's aggregate; its `#[id]` methods name the key, the
//! event's stream without one) and a [`WindowSpec`]: the kind and size of
//! the windows, the lateness they accept, and where an event's time comes
//! from. Each key keeps a watermark, the latest event time it has seen; a
//! window closes once the watermark passes its end by the allowed lateness,
//! and an event that falls only in closed windows is counted as late
//! instead of changing anything. A store runs it as a projector that loads
//! the batch's windows at once, applies the events in memory and writes the
//! changed windows back in the runner's transaction:
//! [`InMemoryWindows`] here, `PgWindows` in the PostgreSQL store. Both
//! answer [`WindowQueries`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use cqrskit::window::{InMemoryWindows, WindowQueries, WindowSpec};
//! use cqrskit::{DomainEvent, InMemoryRunner, document};
//! # use cqrskit::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamId};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Sold { cents: u64 }
//! #[derive(Clone, Debug, Serialize, Deserialize, DomainEvent)]
//! enum TillEvent { Sold(Sold) }
//!
//! /// Takings per till (the event's stream) and 5-minute window.
//! #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
//! struct Takings { sales: u32, cents: u64 }
//!
//! #[document(event = TillEvent, name = "takings_5m")]
//! impl Takings {
//!     #[apply]
//!     fn sold(&mut self, event: &Sold) {
//!         self.sales += 1;
//!         self.cents += event.cents;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = Arc::new(InMemoryEventStore::new());
//! # let sold = |cents| NewEvent::from_event(&TillEvent::Sold(Sold { cents }), Default::default());
//! # store.append(&StreamId::new("till", "t-1"), ExpectedVersion::NoStream, vec![sold(250)?, sold(100)?]).await?;
//! let spec = WindowSpec::tumbling(Duration::from_secs(300))?.allowed_lateness(Duration::from_secs(60));
//! let takings = Arc::new(InMemoryWindows::<Takings>::new(spec));
//! InMemoryRunner::new(store.clone(), takings.clone()).poll().await?;
//! let now = takings.latest("t-1").await?.expect("a window");
//! assert_eq!(now.value, Takings { sales: 2, cents: 350 });
//! assert!(!now.closed, "no later event has closed it");
//! # Ok(())
//! # }
//! ```

mod assign;
mod batch;
mod memory;
mod queries;
mod spec;

pub use batch::{KeyState, LateEvent, StoredWindow, WindowBatch, WindowNeeds, WindowWrites};
pub use memory::InMemoryWindows;
pub use queries::{Window, WindowQueries};
pub use spec::{InvalidWindow, MAX_WINDOWS_PER_EVENT, WindowKind, WindowSpec};

/// Logs a batch's late events, and counts them in
/// `cqrskit_window_late_events_total{read_model}`. Called by a store once
/// the batch's windows are computed: a batch retried after a failure may
/// count its late events again; the stored count per key does not.
pub fn log_late(read_model: &str, late: &[LateEvent]) {
    if late.is_empty() {
        return;
    }
    metrics::counter!("cqrskit_window_late_events_total", "read_model" => read_model.to_owned())
        .increment(late.len() as u64);
    for event in late {
        tracing::debug!(
            read_model,
            key = %event.key,
            event_id = %event.event_id,
            time = %event.time,
            watermark = %event.watermark,
            "a late event fell only in closed windows; it is counted and changes nothing"
        );
    }
}
