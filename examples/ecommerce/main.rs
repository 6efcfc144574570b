//! The e-commerce example: orders, inventory and the fulfilment process
//! manager that ties them together.
//!
//! Run it with no set-up, on the in-memory store:
//!
//! ```text
//! cargo run --example ecommerce
//! ```
//!
//! or on PostgreSQL (the example applies the migrations, in schema
//! `shop_example`; `scripts/ensure-postgres` starts a local server and prints
//! a URL):
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example ecommerce
//! ```
//!
//! It stocks tea and mugs; Alice's order is reserved and confirmed, then paid,
//! shipped and delivered, and her attempt to cancel it afterwards is refused;
//! Bob's order cannot get a mug, so the process manager gives his tea back and
//! cancels it; Carol cancels hers and her stock returns. It prints each step,
//! the read models, and the causation chain of Alice's order.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::ecommerce::{
    AddStock, CancelOrder, CreateOrder, DeliverOrder, OrderLine, OrdersOfCustomer, PayOrder,
    ShipOrder, Shop, StockLevelOf,
};
use cqrskit::postgres::PostgresEventStore;
use cqrskit::{CommandError, EventStore, InMemoryEventStore, QueryHandler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let (store, suffix): (Arc<dyn EventStore>, String) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let store = PostgresEventStore::connect(&url)
                .await?
                .with_schema("shop_example")?;
            store.migrate().await?;
            println!("== store: PostgreSQL, schema shop_example (migrations applied)");
            // Fresh ids per run: earlier runs' events stay in the log.
            (Arc::new(store), format!("-{}", run_suffix()))
        }
        Err(_) => {
            println!("== store: in memory (set DATABASE_URL to use PostgreSQL)");
            (Arc::new(InMemoryEventStore::new()), String::new())
        }
    };
    let shop = Shop::new(store.clone());
    let id = |name: &str| format!("{name}{suffix}");
    let (tea, mug) = (id("tea"), id("mug"));
    let line = |sku: &str, quantity, unit_price| OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price,
    };

    println!("== stock");
    shop.inventory
        .execute(&tea, AddStock { quantity: 10 })
        .await?;
    shop.inventory
        .execute(&mug, AddStock { quantity: 2 })
        .await?;
    println!("added 10 {tea} and 2 {mug}");

    println!("== orders");
    let orders = [
        (
            id("alice"),
            id("order-1"),
            vec![line(&tea, 3, 450), line(&mug, 1, 900)],
        ),
        (
            id("bob"),
            id("order-2"),
            vec![line(&tea, 2, 450), line(&mug, 2, 900)],
        ),
        (id("carol"), id("order-3"), vec![line(&mug, 1, 900)]),
    ];
    let mut alice_created = None;
    for (customer, order_id, lines) in &orders {
        let outcome = shop
            .orders
            .execute(
                order_id,
                CreateOrder {
                    customer_id: customer.to_string(),
                    lines: lines.clone(),
                },
            )
            .await?;
        alice_created.get_or_insert(outcome.events[0].clone());
        println!("{customer} placed {order_id}");
        settle(&shop).await?;
        print_orders(&shop, customer).await?;
    }

    println!("== alice pays, the order ships and arrives");
    let alice_order = &orders[0].1;
    shop.orders
        .execute(
            alice_order,
            PayOrder {
                amount: 3 * 450 + 900,
            },
        )
        .await?;
    shop.orders.execute(alice_order, ShipOrder).await?;
    shop.orders.execute(alice_order, DeliverOrder).await?;
    match shop
        .orders
        .execute(
            alice_order,
            CancelOrder {
                reason: "too late".into(),
            },
        )
        .await
    {
        Err(CommandError::Rejected(reason)) => println!("alice tries to cancel: refused: {reason}"),
        other => {
            return Err(
                format!("cancelling a delivered order must be refused, got {other:?}").into(),
            );
        }
    }

    println!("== carol cancels");
    shop.orders
        .execute(
            &orders[2].1,
            CancelOrder {
                reason: "changed my mind".into(),
            },
        )
        .await?;
    settle(&shop).await?;

    println!("== read models");
    for (customer, _, _) in &orders {
        print_orders(&shop, customer).await?;
    }
    for sku in [&tea, &mug] {
        let level = shop
            .stock_levels
            .handle(StockLevelOf { sku: sku.clone() })
            .await?
            .unwrap_or_default();
        println!(
            "stock of {sku}: {} available, {} reserved",
            level.available, level.reserved
        );
    }

    println!("== what alice's order caused (one correlation id)");
    let created = alice_created.ok_or("no order was placed")?;
    let correlation = created.metadata.correlation_id.ok_or("no correlation id")?;
    // Lookups for tools are a capability a store may offer beside the
    // contract; both stores here do.
    let queries = store.queries().ok_or("the store answers no queries")?;
    for event in queries.events_by_correlation(correlation, 50).await? {
        let cause = if event.metadata.causation_id == Some(created.event_id) {
            "caused by OrderCreated"
        } else {
            "the command itself"
        };
        println!(
            "{} {} v{} ({cause})",
            event.event_type, event.stream, event.version
        );
    }
    Ok(())
}

/// Lets the process manager and read models consume the log. On PostgreSQL a
/// commit becomes visible to log readers once older transactions end, so
/// this processes until two passes a few milliseconds apart find nothing new.
async fn settle(shop: &Shop) -> Result<(), Box<dyn Error>> {
    shop.process().await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    shop.process().await?;
    Ok(())
}

async fn print_orders(shop: &Shop, customer: &str) -> Result<(), Box<dyn Error>> {
    let orders = shop
        .orders_by_customer
        .handle(OrdersOfCustomer {
            customer_id: customer.to_owned(),
        })
        .await?;
    for order in orders {
        println!(
            "  {customer}: {} is {} (total {})",
            order.order_id, order.status, order.total
        );
    }
    Ok(())
}

/// A suffix unique to this run, from the clock.
fn run_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}
