//! The e-commerce example on PostgreSQL, with its process manager under the
//! projection runner (durable checkpoint, at-least-once commands).

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::ecommerce::{
    AddStock, CancelOrder, CreateOrder, Fulfilment, OrderLine, OrderStatus, Shop,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::Detached;
use cqrskit::postgres::ProjectionRunner;

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fulfilment_process_runs_under_the_projection_runner_on_postgres() {
    let db = TestStore::new().await;
    let shop = Shop::new(db.shared());
    shop.inventory
        .execute("tea", AddStock { quantity: 5 })
        .await
        .expect("stock");
    shop.inventory
        .execute("mug", AddStock { quantity: 1 })
        .await
        .expect("stock");
    for (order, lines) in [
        ("o1", vec![line("tea", 2), line("mug", 1)]),
        ("o2", vec![line("tea", 1), line("mug", 1)]),
        ("o3", vec![line("tea", 2)]),
    ] {
        shop.orders
            .execute(
                order,
                CreateOrder {
                    customer_id: "c".into(),
                    lines,
                },
            )
            .await
            .expect("create");
    }
    shop.orders
        .execute(
            "o3",
            CancelOrder {
                reason: "changed my mind".into(),
            },
        )
        .await
        .expect("cancel");

    let fulfilment = Arc::new(Fulfilment::new(shop.orders.clone(), shop.inventory.clone()));
    let runner = ProjectionRunner::new(db.store.clone(), Arc::new(Detached(fulfilment)));
    assert!(runner.acquire_lease().await.expect("lease"));
    let status = |order: &'static str| {
        let orders = shop.orders.clone();
        async move { orders.load(order).await.expect("load").state.status }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        runner.catch_up().await.expect("process");
        let done = status("o1").await == OrderStatus::Confirmed
            && status("o2").await == OrderStatus::Cancelled
            && runner.lag().await.expect("lag").events == 0;
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the process never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tea = shop.inventory.load("tea").await.expect("load").state;
    let mug = shop.inventory.load("mug").await.expect("load").state;
    // o1 holds 2 tea and the mug; o2's tea went back; o3 reserved and released.
    assert_eq!((tea.available, mug.available), (3, 0));
    assert_eq!(tea.reservations.keys().collect::<Vec<_>>(), ["o1"]);
    assert_eq!(status("o3").await, OrderStatus::Cancelled);
    db.drop_schema().await;
}
