//! The shipping service of the two-service example: consumes the order
//! service's public events from NATS JetStream in a process of its own,
//! with its own schema (`shipping_example`), and prepares a shipment for
//! every paid order. It stops after three seconds without a message (or
//! runs until Ctrl-C with `--follow`).
//!
//! ```text
//! export DATABASE_URL=$(scripts/ensure-postgres) NATS_URL=$(scripts/ensure-nats)
//! cargo run --example shipping_service
//! ```

use std::time::Duration;

use cqrs_examples::integration::{Shipment, connect_service, shipping_consumer};
use cqrskit::CommandPipeline;
use cqrskit::nats::{CloudEvent, Outcome};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cqrskit::BoxError> {
    let (store, jetstream) = connect_service("shipping_example").await?;
    let consumer = shipping_consumer(store.clone(), jetstream).await?;
    let shipments = CommandPipeline::<Shipment>::new(std::sync::Arc::new(store), ());

    if std::env::args().any(|arg| arg == "--follow") {
        println!("consuming until Ctrl-C");
        consumer
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        return Ok(());
    }
    while let Some(message) = consumer.fetch_one(Duration::from_secs(3)).await? {
        let event = CloudEvent::decode(message.headers.as_ref(), &message.payload).ok();
        let outcome = consumer.process(message).await?;
        let Some(event) = event else { continue };
        println!(
            "{} ({}): {outcome:?}",
            event.event_type,
            event.subject.as_deref().unwrap_or_default()
        );
        if outcome == Outcome::Handled && event.event_type == cqrs_examples::integration::ORDER_PAID
        {
            let order: cqrs_examples::integration::OrderRefV1 = event.data_as()?;
            let shipment = shipments.load(&order.order).await?;
            println!("  shipment for {}: {:?}", order.order, shipment.state.items);
        }
    }
    println!("no message for three seconds; done");
    Ok(())
}
