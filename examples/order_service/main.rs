//! The order service of the two-service example: places three orders (two
//! paid, one cancelled), then relays its orders' public events to NATS
//! JetStream until it has published everything, and exits. Run the shipping
//! service (`cargo run --example shipping_service`) beside it, before or
//! after: JetStream keeps the events until it reads them.
//!
//! ```text
//! export DATABASE_URL=$(scripts/ensure-postgres) NATS_URL=$(scripts/ensure-nats)
//! cargo run --example order_service
//! ```
//!
//! Its events live in the schema `orders_example`.

use cqrs_examples::ecommerce::{
    CancelOrder, ConfirmOrder, CreateOrder, Order, OrderLine, PayOrder,
};
use std::time::Duration;

use cqrs_examples::integration::{connect_service, order_relay};
use cqrskit::host::Host;
use cqrskit::{CommandPipeline, Position};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cqrskit::BoxError> {
    cqrs_examples::logging();
    let (store, jetstream) = connect_service("orders_example").await?;
    let mut last = Position::START;

    // Fresh order ids per run: earlier runs' orders stay in the log.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let orders = CommandPipeline::<Order>::new(std::sync::Arc::new(store.clone()), ());
    let line = |sku: &str, quantity| OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price: 450,
    };
    for (name, lines, pay) in [
        ("alice", vec![line("tea", 2), line("mug", 1)], true),
        ("bob", vec![line("mug", 2)], false),
        ("carol", vec![line("tea", 1)], true),
    ] {
        let id = format!("{name}-{run}");
        let total = lines
            .iter()
            .map(|line: &OrderLine| line.unit_price * u64::from(line.quantity))
            .sum();
        orders
            .execute(
                &id,
                CreateOrder {
                    customer_id: name.to_owned(),
                    lines,
                },
            )
            .await?;
        orders.execute(&id, ConfirmOrder).await?;
        let outcome = if pay {
            println!("order {id}: placed and paid ({total} cents)");
            orders.execute(&id, PayOrder { amount: total }).await?
        } else {
            println!("order {id}: placed and cancelled");
            let reason = "out of budget".to_owned();
            orders.execute(&id, CancelOrder { reason }).await?
        };
        last = outcome.events.last().map_or(last, |event| event.position);
    }

    // The relay runs in a host until JetStream holds every event up to the
    // last order's: read-your-writes on the relay, as on any projection.
    let relay = order_relay(store, jetstream);
    let name = relay.name().to_owned();
    let host = Host::new().service(relay);
    let handle = host.handle();
    host.run(async move {
        match handle.wait_for(&name, last, Duration::from_secs(60)).await {
            Ok(true) => {
                println!("relayed the orders to JetStream (stream SHOP, subjects shop.order.*)")
            }
            Ok(false) => eprintln!("the relay did not catch up within a minute"),
            Err(error) => eprintln!("the relay: {error}"),
        }
    })
    .await?;
    Ok(())
}
