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

/// Both of the shop's process managers (fulfilment, payment deadlines) run
/// on PostgreSQL as a user runs them: `Detached` under runners in a
/// daemon, with the deadlines in the same schema. Stopped and started
/// again, they go on from their checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shops_process_managers_run_on_postgres_with_their_checkpoints() {
    use cqrs_examples::ecommerce::{PAYMENT_TIMEOUT, PaymentTimeout};
    use cqrskit::deadline::{Deadline, DeadlineState, DeadlineStore};
    use cqrskit::postgres::{ProjectionDaemon, RunnerOptions};

    let db = TestStore::new().await;
    let shop = Shop::new(db.shared());
    let deadlines = Arc::new(db.store.deadlines());
    shop.inventory
        .execute("tea", AddStock { quantity: 5 })
        .await
        .expect("stock");
    let options = RunnerOptions {
        poll_interval: Duration::from_millis(50),
        ..RunnerOptions::default()
    };
    let daemon = || {
        let fulfilment = Arc::new(Fulfilment::new(shop.orders.clone(), shop.inventory.clone()));
        let payments = Arc::new(PaymentTimeout::new(deadlines.clone()));
        ProjectionDaemon::new()
            .with(
                ProjectionRunner::new(db.store.clone(), Arc::new(Detached(fulfilment)))
                    .with_options(options.clone()),
            )
            .with(
                ProjectionRunner::new(db.store.clone(), Arc::new(Detached(payments)))
                    .with_options(options.clone()),
            )
    };
    let until_confirmed = |order: &'static str| {
        let orders = shop.orders.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while orders.load(order).await.expect("load").state.status != OrderStatus::Confirmed {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{order} never confirmed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let create = |order: &'static str| {
        let orders = shop.orders.clone();
        async move {
            let create = CreateOrder {
                customer_id: "c".into(),
                lines: vec![line("tea", 1)],
            };
            orders.execute(order, create).await.expect("create");
        }
    };

    create("o1").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = daemon();
    let running = tokio::spawn(async move {
        first
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    until_confirmed("o1").await;
    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");

    // Their checkpoints are saved: a runner made afresh starts past o1.
    let fresh = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(Detached(Arc::new(Fulfilment::new(
            shop.orders.clone(),
            shop.inventory.clone(),
        )))),
    );
    assert!(fresh.checkpoint().await.expect("checkpoint") > cqrskit::Position::START);
    // While they are stopped, another order; started again, they take it
    // from their checkpoints.
    create("o2").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = daemon();
    let running = tokio::spawn(async move {
        second
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    until_confirmed("o2").await;
    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");

    let tea = shop.inventory.load("tea").await.expect("load").state;
    assert_eq!(tea.available, 3, "one reservation per order");
    for order in ["o1", "o2"] {
        let stream = cqrskit::StreamId::new("order", order);
        let id = Deadline::id_of(PAYMENT_TIMEOUT, &stream);
        assert_eq!(
            deadlines.state(id).await.expect("state"),
            Some(DeadlineState::Pending),
            "{order}'s payment deadline"
        );
    }
    db.drop_schema().await;
}
