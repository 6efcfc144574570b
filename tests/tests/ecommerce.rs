//! The e-commerce example on PostgreSQL, with its process manager under the
//! projection runner (durable checkpoint, at-least-once commands).

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::ecommerce::{
    AddStock, CancelOrder, CreateOrder, Fulfilment, OrderCreated, OrderLine, OrderStatus, Shop,
    StockReleased, StockReserved,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::Detached;
use cqrskit::postgres::ProjectionRunner;
use cqrskit::postgres::sqlx::{self, PgConnection};

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price: 100,
    }
}

/// A shop over `db` with tea (5) and mugs (1) in stock, and three orders:
/// o1 (2 tea, 1 mug), o2 (1 tea, 1 mug: no mug left for it) and o3 (2 tea,
/// cancelled at once).
async fn shop_with_orders(db: &TestStore) -> Shop {
    let shop = Shop::new(db.shared());
    for (sku, quantity) in [("tea", 5), ("mug", 1)] {
        shop.inventory
            .execute(sku, AddStock { quantity })
            .await
            .expect("stock");
    }
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
    shop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fulfilment_process_runs_under_the_projection_runner_on_postgres() {
    let db = TestStore::new().await;
    let shop = shop_with_orders(&db).await;

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
    use cqrskit::host::Host;
    use cqrskit::postgres::RunnerOptions;

    let db = TestStore::new().await;
    let shop = Shop::new(db.shared());
    let deadlines = Arc::new(db.store.deadlines());
    shop.inventory
        .execute("tea", AddStock { quantity: 5 })
        .await
        .expect("stock");
    let options = RunnerOptions::default().poll_interval(Duration::from_millis(50));
    let daemon = || {
        let fulfilment = Arc::new(Fulfilment::new(shop.orders.clone(), shop.inventory.clone()));
        let payments = Arc::new(PaymentTimeout::new(deadlines.clone()));
        Host::new()
            .service(
                ProjectionRunner::new(db.store.clone(), Arc::new(Detached(fulfilment)))
                    .with_options(options.clone()),
            )
            .service(
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

/// Ordered and reserved items per order and product, in PostgreSQL: a
/// multi-stream read model written in the runner's transaction, into
/// `table` (qualified by the test's schema).
struct ReservedByOrder {
    table: String,
}

type ShopEnvelope = cqrskit::EventEnvelope<cqrs_examples::ecommerce::ShopEvent>;

#[cqrskit::projector(event = cqrs_examples::ecommerce::ShopEvent, name = "reserved_by_order")]
impl ReservedByOrder {
    #[setup]
    async fn create(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (order_id text, sku text,
             ordered bigint NOT NULL, reserved bigint NOT NULL, PRIMARY KEY (order_id, sku))",
            self.table
        ))
        .execute(tx)
        .await?;
        Ok(())
    }

    #[project]
    async fn created(
        &self,
        event: &OrderCreated,
        envelope: &ShopEnvelope,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        for line in &event.lines {
            sqlx::query(&format!(
                "INSERT INTO {0} AS rows VALUES ($1, $2, $3, 0)
                 ON CONFLICT (order_id, sku) DO UPDATE SET ordered = rows.ordered + $3",
                self.table
            ))
            .bind(&envelope.stream.aggregate_id)
            .bind(&line.sku)
            .bind(i64::from(line.quantity))
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    #[project]
    async fn reserved(
        &self,
        event: &StockReserved,
        envelope: &ShopEnvelope,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        self.change(&event.order_id, envelope, i64::from(event.quantity), tx)
            .await
    }

    #[project]
    async fn released(
        &self,
        event: &StockReleased,
        envelope: &ShopEnvelope,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        self.change(&event.order_id, envelope, -i64::from(event.quantity), tx)
            .await
    }
}

impl ReservedByOrder {
    async fn change(
        &self,
        order_id: &str,
        envelope: &ShopEnvelope,
        by: i64,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {} SET reserved = reserved + $3 WHERE order_id = $1 AND sku = $2",
            self.table
        ))
        .bind(order_id)
        .bind(&envelope.stream.aggregate_id)
        .bind(by)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// A read model over two aggregates' events (an event union) runs under the
/// PostgreSQL runner like any other: it reads both aggregate types' events
/// from one log, in log order (each reservation after the order it names),
/// and only the types its methods take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_over_orders_and_inventory_runs_under_the_runner() {
    let db = TestStore::new().await;
    let shop = shop_with_orders(&db).await;
    // The process manager reserves (and, for o2, releases again).
    shop.process().await.expect("process");

    let projector = ReservedByOrder {
        table: db.table("reserved_by_order"),
    };
    let runner = ProjectionRunner::new(db.store.clone(), Arc::new(projector));
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT order_id, sku, ordered, reserved FROM {} ORDER BY order_id, sku",
        db.table("reserved_by_order")
    ))
    .fetch_all(db.pool())
    .await
    .expect("read model");
    let row = |order: &str, sku: &str, ordered, reserved| {
        (order.to_owned(), sku.to_owned(), ordered, reserved)
    };
    assert_eq!(
        rows,
        [
            row("o1", "mug", 1, 1),
            row("o1", "tea", 2, 2),
            row("o2", "mug", 1, 0),
            row("o2", "tea", 1, 0),
            row("o3", "tea", 2, 0),
        ]
    );
    // What it reads: the log's events of the three types it takes, none else.
    let lag = runner.lag().await.expect("lag");
    assert_eq!(lag.events, 0);
    let handled: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {} WHERE event_type = ANY($1)",
        db.table("events")
    ))
    .bind(ReservedByOrder::EVENT_TYPES)
    .fetch_one(db.pool())
    .await
    .expect("count");
    let all: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", db.table("events")))
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert!(
        handled < all,
        "stock additions and order confirmations are not its types"
    );
    assert_eq!(
        ReservedByOrder::EVENT_TYPES,
        ["OrderCreated", "StockReserved", "StockReleased"]
    );
    db.drop_schema().await;
}
