//! The two-service example (`cqrs_examples::integration`): the order service
//! and the shipping service, each with a schema of its own, exchanging
//! events through a NATS server of the test's own.

use cqrskit::EventStore;
use std::time::Duration;

use cqrs_examples::ecommerce::{
    CancelOrder, ConfirmOrder, CreateOrder, Order, OrderLine, PayOrder,
};
use cqrs_examples::integration::{PublicLine, Shipment, order_relay, shipping_consumer};
use cqrs_tests::nats::{PrivateNats, connect};
use cqrs_tests::postgres::TestStore;
use cqrskit::CommandPipeline;
use cqrskit::nats::Outcome;
use cqrskit::nats::async_nats::jetstream;
use cqrskit::postgres::testing::caught_up;

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price: 250,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_orders_get_shipments_in_the_other_service_and_cancelled_ones_do_not() {
    let server = PrivateNats::start().await;
    let jetstream = jetstream::new(connect(&server.url()).await);
    let (orders_db, shipping_db) = (TestStore::new().await, TestStore::new().await);

    let orders = CommandPipeline::<Order>::new(orders_db.shared(), ());
    for (id, lines) in [
        ("o1", vec![line("tea", 2), line("mug", 1)]),
        ("o2", vec![line("mug", 1)]),
        ("o3", vec![line("tea", 1)]),
    ] {
        let total = lines
            .iter()
            .map(|line| line.unit_price * u64::from(line.quantity))
            .sum();
        let customer_id = "alice".to_owned();
        orders
            .execute(id, CreateOrder { customer_id, lines })
            .await
            .expect("create");
        orders.execute(id, ConfirmOrder).await.expect("confirm");
        if id == "o2" {
            let reason = "changed my mind".to_owned();
            orders
                .execute(id, CancelOrder { reason })
                .await
                .expect("cancel");
        } else {
            orders
                .execute(id, PayOrder { amount: total })
                .await
                .expect("pay");
        }
    }

    // The order service relays; the shipping service consumes.
    let relay = order_relay(orders_db.store.clone(), jetstream.clone());
    assert!(relay.acquire_lease().await.expect("lease"));
    assert_eq!(caught_up(&relay).await, 6, "3 placed, 2 paid, 1 cancelled");
    let consumer = shipping_consumer(shipping_db.store.clone(), jetstream.clone())
        .await
        .expect("the shipping consumer");
    let mut outcomes = Vec::new();
    while let Some(message) = consumer
        .fetch_one(Duration::from_secs(1))
        .await
        .expect("fetch")
    {
        outcomes.push(consumer.process(message).await.expect("process"));
    }
    assert_eq!(
        outcomes,
        vec![Outcome::Handled; 6],
        "3 placed, 2 paid, 1 cancelled"
    );

    let shipments = CommandPipeline::<Shipment>::new(shipping_db.shared(), ());
    let items = |sku: &str, quantity| PublicLine {
        sku: sku.to_owned(),
        quantity,
    };
    assert_eq!(
        shipments.load("o1").await.expect("load").state.items,
        [items("tea", 2), items("mug", 1)]
    );
    assert_eq!(
        shipments.load("o3").await.expect("load").state.items,
        [items("tea", 1)]
    );
    assert!(
        shipments
            .load("o2")
            .await
            .expect("load")
            .state
            .items
            .is_empty(),
        "cancelled"
    );
    // The shipment's event carries the order service's correlation and
    // causation: the message it was caused by.
    let prepared = shipping_db
        .store
        .read_stream(&CommandPipeline::<Shipment>::stream_id("o1"), 1, 10)
        .await
        .expect("the shipment's events");
    assert_eq!(prepared.len(), 1);
    assert!(prepared[0].metadata.causation_id.is_some());
    drop(server);
    orders_db.drop_schema().await;
    shipping_db.drop_schema().await;
}
