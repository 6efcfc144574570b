//! A checkout in a process of its own, for the test that kills it between
//! its two steps (`tests/tests/checkout_crash.rs`).
//!
//! Reserves the lines `tea` x2 and `mug` x1 for `ORDER_ID` (step one, with
//! its deadline kept in PostgreSQL), prints `reserved`, then waits 60 s
//! before creating the order (step two): the test kills it meanwhile.
//! Configured by `DATABASE_URL`, `SCHEMA`, `ORDER_ID`.

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::ecommerce::{OrderLine, Shop};
use cqrs_tests::env::var;
use cqrskit::deadline::SystemClock;
use cqrskit::postgres::PostgresEventStore;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = PostgresEventStore::connect(&var("DATABASE_URL"))
        .await
        .expect("connect")
        .with_schema(&var("SCHEMA"))
        .expect("schema");
    let shop = Shop::with_deadlines(
        Arc::new(store.clone()),
        Arc::new(store.deadlines()),
        Arc::new(SystemClock),
    );
    let lines = [
        OrderLine {
            sku: "tea".into(),
            quantity: 2,
            unit_price: 450,
        },
        OrderLine {
            sku: "mug".into(),
            quantity: 1,
            unit_price: 900,
        },
    ];
    let order_id = var("ORDER_ID");
    let checkout = shop.checkout();
    checkout.reserve(&order_id, &lines).await.expect("reserve");
    println!("reserved");
    tokio::time::sleep(Duration::from_secs(60)).await;
    checkout
        .complete(&order_id, "alice", &lines)
        .await
        .expect("complete");
}
