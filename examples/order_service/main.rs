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
use cqrs_examples::integration::{connect_service, order_relay};
use cqrskit::CommandPipeline;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cqrskit::BoxError> {
    let (store, jetstream) = connect_service("orders_example").await?;

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
        if pay {
            orders.execute(&id, PayOrder { amount: total }).await?;
            println!("order {id}: placed and paid ({total} cents)");
        } else {
            let reason = "out of budget".to_owned();
            orders.execute(&id, CancelOrder { reason }).await?;
            println!("order {id}: placed and cancelled");
        }
    }

    let relay = order_relay(store, jetstream);
    while !relay.acquire_lease().await? {
        println!("another relay holds the lease; waiting");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let mut published = 0;
    loop {
        let step = relay.catch_up().await?;
        if step == 0 && published > 0 {
            break;
        }
        published += step;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    relay.release_lease().await?;
    println!("relayed {published} order events to JetStream (stream SHOP, subjects shop.order.*)");
    Ok(())
}
