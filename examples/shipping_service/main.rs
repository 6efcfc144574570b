//! The shipping service of the two-service example: consumes the order
//! service's public events from NATS JetStream in a process of its own,
//! with its own schema (`shipping_example`), and prepares a shipment for
//! every paid order. It stops after three seconds without a message (or
//! runs until Ctrl-C or SIGTERM with `--follow`).
//!
//! ```text
//! export DATABASE_URL=$(scripts/ensure-postgres) NATS_URL=$(scripts/ensure-nats)
//! cargo run --example shipping_service
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cqrs_examples::integration::{connect_service, shipping_consumer};
use cqrskit::host::{Host, shutdown_signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cqrskit::BoxError> {
    cqrs_examples::logging();
    let (store, jetstream) = connect_service("shipping_example").await?;
    let last_message = Arc::new(Mutex::new(Instant::now()));
    let consumer = shipping_consumer(store, jetstream)
        .await?
        .with_outcome_hook({
            let last_message = last_message.clone();
            move |taken| {
                *last_message.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                println!("{}: {}", taken.subject, taken.outcome.label());
            }
        });
    let host = Host::new().service(consumer);
    if std::env::args().any(|arg| arg == "--follow") {
        println!("consuming until Ctrl-C");
        host.run(shutdown_signal()).await?;
        return Ok(());
    }
    host.run(async move {
        let quiet = || {
            last_message
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
        };
        while quiet() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("no message for three seconds; done");
    })
    .await?;
    Ok(())
}
