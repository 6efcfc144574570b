//! The checkout workflow killed (SIGKILL) between its two steps: stock is
//! reserved for an order that never comes. Its deadline, kept in
//! PostgreSQL, abandons the order once the hold is over, the fulfilment
//! process manager gives the stock back, and a late second step is refused.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;

use cqrs_examples::ecommerce::{
    AddStock, CHECKOUT_HOLD, CheckoutError, Inventory, OrderError, OrderLine, Shop,
};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::chrono::Utc;
use cqrskit::deadline::ManualClock;

async fn reserved(shop: &Shop, sku: &str) -> u32 {
    let inventory: Inventory = shop.inventory.load(sku).await.expect("load").state;
    inventory.reservations.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_killed_between_its_steps_gives_its_stock_back_when_the_hold_is_over() {
    let db = TestStore::new().await;
    let clock = ManualClock::new(Utc::now());
    let shop = Shop::with_deadlines(
        db.shared(),
        Arc::new(
            db.store
                .deadlines()
                .with_test_clock(Arc::new(clock.clone())),
        ),
        Arc::new(clock.clone()),
    );
    for (sku, quantity) in [("tea", 5), ("mug", 1)] {
        shop.inventory
            .execute(sku, AddStock { quantity })
            .await
            .expect("stock");
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_checkout"))
        .env("DATABASE_URL", database_url())
        .env("SCHEMA", &db.schema)
        .env("ORDER_ID", "o1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the checkout");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "reserved");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    // Between the steps: the stock is held, for an order that does not exist.
    shop.process().await.expect("process");
    assert_eq!(
        (reserved(&shop, "tea").await, reserved(&shop, "mug").await),
        (2, 1)
    );
    assert_eq!(shop.orders.load("o1").await.expect("load").version, 0);

    // Within the hold nothing happens; past it, the stock comes back.
    clock.advance(CHECKOUT_HOLD / 2);
    shop.process().await.expect("process");
    assert_eq!(reserved(&shop, "tea").await, 2);
    clock.advance(CHECKOUT_HOLD);
    shop.process().await.expect("process");
    assert_eq!(
        (reserved(&shop, "tea").await, reserved(&shop, "mug").await),
        (0, 0)
    );

    // The dead process's second step, come late, is refused.
    let lines = [OrderLine {
        sku: "tea".into(),
        quantity: 2,
        unit_price: 450,
    }];
    let late = shop
        .checkout()
        .complete("o1", "alice", &lines)
        .await
        .expect_err("abandoned");
    assert!(
        matches!(late, CheckoutError::Order(OrderError::AlreadyExists)),
        "{late}"
    );
    db.drop_schema().await;
}
