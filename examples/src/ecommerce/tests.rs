use std::sync::Arc;

use cqrskit::testing::AggregateFixture;
use cqrskit::{
    CommandError, DomainEvent, EventStore, ExpectedVersion, InMemoryEventStore, Metadata, NewEvent,
    Position, QueryHandler, StreamId, catch_up,
};

use super::*;

fn line(sku: &str, quantity: u32, unit_price: u64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price,
    }
}

fn created() -> OrderCreated {
    OrderCreated {
        customer_id: "alice".into(),
        lines: vec![line("tea", 2, 450), line("mug", 1, 900)],
    }
}

#[tokio::test]
async fn an_order_is_created_with_its_lines() {
    AggregateFixture::<Order>::new(())
        .when(CreateOrder {
            customer_id: "alice".into(),
            lines: created().lines,
        })
        .await
        .then_expect_events([OrderEvent::from(created())])
        .then_expect_state(|order| assert_eq!(order.total(), 1800));
}

#[tokio::test]
async fn an_empty_order_is_refused() {
    AggregateFixture::<Order>::new(())
        .when(CreateOrder {
            customer_id: "alice".into(),
            lines: vec![line("tea", 0, 450)],
        })
        .await
        .then_expect_error(OrderError::Empty);
}

#[tokio::test]
async fn an_unpaid_order_cannot_be_shipped() {
    AggregateFixture::<Order>::new(())
        .given([OrderEvent::from(created()), OrderConfirmed.into()])
        .when(ShipOrder)
        .await
        .then_expect_error(OrderError::InvalidTransition {
            action: "ship",
            status: OrderStatus::Confirmed,
        });
}

#[tokio::test]
async fn a_payment_must_match_the_total() {
    AggregateFixture::<Order>::new(())
        .given([OrderEvent::from(created()), OrderConfirmed.into()])
        .when(PayOrder { amount: 1000 })
        .await
        .then_expect_error(OrderError::WrongAmount {
            total: 1800,
            paid: 1000,
        });
}

#[tokio::test]
async fn a_paid_order_ships_and_is_delivered() {
    let history = [
        OrderEvent::from(created()),
        OrderConfirmed.into(),
        OrderPaid { amount: 1800 }.into(),
    ];
    AggregateFixture::<Order>::new(())
        .given(history.clone())
        .when(ShipOrder)
        .await
        .then_expect_events([OrderShipped]);
    AggregateFixture::<Order>::new(())
        .given(history)
        .given([OrderShipped])
        .when(DeliverOrder)
        .await
        .then_expect_events([OrderDelivered])
        .then_expect_state(|order| assert_eq!(order.status, OrderStatus::Delivered));
}

#[tokio::test]
async fn a_delivered_order_cannot_be_cancelled() {
    AggregateFixture::<Order>::new(())
        .given([
            OrderEvent::from(created()),
            OrderConfirmed.into(),
            OrderPaid { amount: 1800 }.into(),
            OrderShipped.into(),
            OrderDelivered.into(),
        ])
        .when(CancelOrder {
            reason: "changed my mind".into(),
        })
        .await
        .then_expect_error_message("cannot cancel an order that is Delivered");
}

#[tokio::test]
async fn confirming_and_cancelling_twice_change_nothing() {
    AggregateFixture::<Order>::new(())
        .given([OrderEvent::from(created()), OrderConfirmed.into()])
        .when(ConfirmOrder)
        .await
        .then_expect_events(Vec::<OrderEvent>::new());
    AggregateFixture::<Order>::new(())
        .given([
            OrderEvent::from(created()),
            OrderCancelled {
                reason: "x".into(),
                customer_id: Some("alice".into()),
            }
            .into(),
        ])
        .when(CancelOrder { reason: "y".into() })
        .await
        .then_expect_events(Vec::<OrderEvent>::new());
}

#[tokio::test]
async fn stock_is_reserved_once_per_order_and_never_beyond_what_is_there() {
    let reserved = StockReserved {
        order_id: "o1".into(),
        quantity: 3,
    };
    AggregateFixture::<Inventory>::new(())
        .given([StockAdded { quantity: 5 }])
        .when(ReserveStock {
            order_id: "o1".into(),
            quantity: 3,
        })
        .await
        .then_expect_events([reserved.clone()]);
    AggregateFixture::<Inventory>::new(())
        .given([
            InventoryEvent::from(StockAdded { quantity: 5 }),
            reserved.clone().into(),
        ])
        .when(ReserveStock {
            order_id: "o1".into(),
            quantity: 3,
        })
        .await
        .then_expect_events(Vec::<InventoryEvent>::new());
    AggregateFixture::<Inventory>::new(())
        .given([
            InventoryEvent::from(StockAdded { quantity: 5 }),
            reserved.into(),
        ])
        .when(ReserveStock {
            order_id: "o2".into(),
            quantity: 3,
        })
        .await
        .then_expect_error(InventoryError::InsufficientStock {
            available: 2,
            requested: 3,
        });
}

#[tokio::test]
async fn releasing_gives_back_exactly_the_reservation() {
    AggregateFixture::<Inventory>::new(())
        .given([
            InventoryEvent::from(StockAdded { quantity: 5 }),
            StockReserved {
                order_id: "o1".into(),
                quantity: 3,
            }
            .into(),
        ])
        .when(ReleaseStock {
            order_id: "o1".into(),
        })
        .await
        .then_expect_events([StockReleased {
            order_id: "o1".into(),
            quantity: 3,
        }])
        .then_expect_state(|inventory| assert_eq!(inventory.available, 5));
}

async fn status(shop: &Shop, customer: &str, order_id: &str) -> OrderStatus {
    let orders = shop
        .orders_by_customer
        .handle(OrdersOfCustomer {
            customer_id: customer.into(),
        })
        .await
        .expect("infallible");
    orders
        .into_iter()
        .find(|order| order.order_id == order_id)
        .map_or(OrderStatus::None, |order| order.status)
}

async fn stock(shop: &Shop, sku: &str) -> StockLevel {
    shop.stock_levels
        .handle(StockLevelOf { sku: sku.into() })
        .await
        .expect("infallible")
        .unwrap_or_default()
}

/// `shop` with `items` (sku, quantity) in stock.
async fn stocked(shop: Shop, items: &[(&str, u32)]) -> Shop {
    for &(sku, quantity) in items {
        shop.inventory
            .execute(sku, AddStock { quantity })
            .await
            .expect("stock");
    }
    shop
}

#[tokio::test]
async fn the_process_manager_confirms_orders_it_can_reserve_and_cancels_the_others() {
    let shop = stocked(
        Shop::new(Arc::new(InMemoryEventStore::new())),
        &[("tea", 10), ("mug", 1)],
    )
    .await;

    let alice = shop
        .orders
        .execute(
            "o-alice",
            CreateOrder {
                customer_id: "alice".into(),
                lines: vec![line("tea", 3, 450), line("mug", 1, 900)],
            },
        )
        .await
        .expect("create");
    shop.orders
        .execute(
            "o-bob",
            CreateOrder {
                customer_id: "bob".into(),
                lines: vec![line("tea", 2, 450), line("mug", 1, 900)],
            },
        )
        .await
        .expect("create");
    shop.process().await.expect("process");

    assert_eq!(
        status(&shop, "alice", "o-alice").await,
        OrderStatus::Confirmed
    );
    // Bob's tea was reserved, then his mug could not be: the tea went back.
    assert_eq!(status(&shop, "bob", "o-bob").await, OrderStatus::Cancelled);
    assert_eq!(
        stock(&shop, "tea").await,
        StockLevel {
            available: 7,
            reserved: 3
        }
    );
    assert_eq!(
        stock(&shop, "mug").await,
        StockLevel {
            available: 0,
            reserved: 1
        }
    );

    // The reservation carries the order's correlation id and names the order's
    // creation as its cause.
    let created = &alice.events[0];
    let correlation = created.metadata.correlation_id.expect("correlation id");
    let chain = shop
        .store
        .queries()
        .expect("the in-memory store answers queries")
        .events_by_correlation(correlation, 20)
        .await
        .expect("query");
    let kinds: Vec<&str> = chain
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "OrderCreated",
            "StockReserved",
            "StockReserved",
            "OrderConfirmed"
        ]
    );
    assert!(
        chain[1..]
            .iter()
            .all(|event| event.metadata.causation_id == Some(created.event_id))
    );
}

#[tokio::test]
async fn a_cancelled_order_gives_its_stock_back() {
    let shop = stocked(
        Shop::new(Arc::new(InMemoryEventStore::new())),
        &[("tea", 4)],
    )
    .await;
    shop.orders
        .execute(
            "o1",
            CreateOrder {
                customer_id: "carol".into(),
                lines: vec![line("tea", 4, 450)],
            },
        )
        .await
        .expect("create");
    shop.process().await.expect("process");
    assert_eq!(
        stock(&shop, "tea").await,
        StockLevel {
            available: 0,
            reserved: 4
        }
    );

    shop.orders
        .execute(
            "o1",
            CancelOrder {
                reason: "changed my mind".into(),
            },
        )
        .await
        .expect("cancel");
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "carol", "o1").await, OrderStatus::Cancelled);
    assert_eq!(
        stock(&shop, "tea").await,
        StockLevel {
            available: 4,
            reserved: 0
        }
    );

    // Seeing the events again (a process manager restarted from an old
    // checkpoint) changes nothing: every command it sends is idempotent.
    let replay = Shop::new(shop.store.clone());
    replay.process().await.expect("replay");
    let stored = shop
        .store
        .stream_version(&cqrskit::StreamId::new("inventory", "tea"))
        .await
        .expect("version");
    assert_eq!(stored, 3, "no second reservation or release");
}

#[tokio::test]
async fn an_order_that_is_not_paid_cannot_ship_through_the_pipeline_either() {
    let shop = stocked(
        Shop::new(Arc::new(InMemoryEventStore::new())),
        &[("tea", 4)],
    )
    .await;
    shop.orders
        .execute(
            "o1",
            CreateOrder {
                customer_id: "dan".into(),
                lines: vec![line("tea", 1, 450)],
            },
        )
        .await
        .expect("create");
    shop.process().await.expect("process");
    let refused = shop.orders.execute("o1", ShipOrder).await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(OrderError::InvalidTransition {
            action: "ship",
            ..
        }))
    ));
}

#[tokio::test]
async fn an_order_whose_total_does_not_fit_is_refused() {
    // One line's price overflows...
    AggregateFixture::<Order>::new(())
        .when(CreateOrder {
            customer_id: "alice".into(),
            lines: vec![line("gold", 2, u64::MAX / 2 + 1)],
        })
        .await
        .then_expect_error(OrderError::TotalOverflow);
    // ...or only the sum of lines that each fit.
    AggregateFixture::<Order>::new(())
        .when(CreateOrder {
            customer_id: "alice".into(),
            lines: vec![line("gold", 1, u64::MAX), line("tea", 1, 1)],
        })
        .await
        .then_expect_error(OrderError::TotalOverflow)
        .then_expect_state(|order| assert_eq!(order.status, OrderStatus::None));
}

#[tokio::test]
async fn stock_that_would_not_fit_its_count_is_refused() {
    AggregateFixture::<Inventory>::new(())
        .given([StockAdded {
            quantity: u32::MAX - 2,
        }])
        .when(AddStock { quantity: 3 })
        .await
        .then_expect_error(InventoryError::StockOverflow {
            on_hand: u64::from(u32::MAX - 2),
            added: 3,
        })
        .then_expect_state(|inventory| assert_eq!(inventory.available, u32::MAX - 2));
    // Reserved items come back on release, so they count as well.
    AggregateFixture::<Inventory>::new(())
        .given([
            InventoryEvent::from(StockAdded { quantity: u32::MAX }),
            StockReserved {
                order_id: "o1".into(),
                quantity: 10,
            }
            .into(),
        ])
        .when(AddStock { quantity: 5 })
        .await
        .then_expect_error(InventoryError::StockOverflow {
            on_hand: u64::from(u32::MAX),
            added: 5,
        });
}

#[tokio::test]
async fn stored_events_beyond_the_stock_range_load_without_panicking() {
    // Events written by other code than these handlers: the aggregate still
    // loads, its count pinned at the bounds.
    AggregateFixture::<Inventory>::new(())
        .given([
            InventoryEvent::from(StockAdded { quantity: u32::MAX }),
            StockAdded { quantity: 1 }.into(),
            StockReserved {
                order_id: "o1".into(),
                quantity: 7,
            }
            .into(),
            StockReserved {
                order_id: "o2".into(),
                quantity: u32::MAX,
            }
            .into(),
        ])
        .when(ReleaseStock {
            order_id: "o1".into(),
        })
        .await
        .then_expect_events([StockReleased {
            order_id: "o1".into(),
            quantity: 7,
        }])
        .then_expect_state(|inventory| assert_eq!(inventory.available, 7));
}

/// Appends `events` to a new stream as other code than the handlers might.
async fn stored<E: DomainEvent>(store: &InMemoryEventStore, stream: StreamId, events: &[E]) {
    let events = events
        .iter()
        .map(|event| NewEvent::from_event(event, Metadata::new()).expect("encodes"))
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .expect("appended");
}

#[tokio::test]
async fn the_read_models_report_amounts_they_cannot_hold_instead_of_wrapping() {
    let store = InMemoryEventStore::new();
    stored(
        &store,
        StreamId::new("order", "o1"),
        &[OrderEvent::from(OrderCreated {
            customer_id: "alice".into(),
            lines: vec![line("gold", 2, u64::MAX)],
        })],
    )
    .await;
    stored(
        &store,
        StreamId::new("inventory", "tea"),
        &[
            InventoryEvent::from(StockAdded { quantity: u32::MAX }),
            StockAdded { quantity: 1 }.into(),
        ],
    )
    .await;

    let orders = OrdersByCustomer::default();
    let failure = catch_up(&store, &orders, Position::START, 10)
        .await
        .expect_err("the total does not fit");
    assert!(failure.to_string().contains("total"), "{failure}");
    let levels = StockLevels::default();
    let failure = catch_up(&store, &levels, Position::START, 10)
        .await
        .expect_err("the stock does not fit");
    assert!(failure.to_string().contains("stock"), "{failure}");
    // The level stays as the last event that fitted left it.
    assert_eq!(levels.all()["tea"].available, u32::MAX);
}

/// A shop on a clock the test moves, with one product in stock and the
/// order `o1` for two of it, created and confirmed.
async fn shop_with_an_order(clock: &cqrskit::deadline::ManualClock) -> Shop {
    let shop = stocked(
        Shop::with_deadlines(
            Arc::new(InMemoryEventStore::new()),
            Arc::new(
                cqrskit::deadline::InMemoryDeadlines::new().with_clock(Arc::new(clock.clone())),
            ),
            Arc::new(clock.clone()),
        ),
        &[("tea", 5)],
    )
    .await;
    shop.orders
        .execute(
            "o1",
            CreateOrder {
                customer_id: "alice".into(),
                lines: vec![line("tea", 2, 450)],
            },
        )
        .await
        .expect("create");
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "alice", "o1").await, OrderStatus::Confirmed);
    shop
}

#[tokio::test]
async fn an_order_left_unpaid_is_cancelled_when_its_payment_deadline_falls_due() {
    let clock = cqrskit::deadline::ManualClock::new(cqrskit::chrono::Utc::now());
    let shop = shop_with_an_order(&clock).await;
    assert_eq!(stock(&shop, "tea").await.reserved, 2);

    clock.advance(PAYMENT_WINDOW - std::time::Duration::from_secs(60));
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "alice", "o1").await, OrderStatus::Confirmed);

    clock.advance(std::time::Duration::from_secs(120));
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "alice", "o1").await, OrderStatus::Cancelled);
    assert_eq!(stock(&shop, "tea").await.reserved, 0, "the stock is back");
    let stream = StreamId::new(<Order as cqrskit::Aggregate>::TYPE, "o1");
    let deadline = cqrskit::deadline::Deadline::id_of(PAYMENT_TIMEOUT, &stream);
    assert_eq!(
        shop.deadlines.state(deadline).await.expect("state"),
        Some(cqrskit::deadline::DeadlineState::Delivered {
            outcome: "executed".into()
        })
    );
    let cancelled = shop
        .store
        .read_stream(&stream, 1, 100)
        .await
        .expect("read")
        .into_iter()
        .filter(|event| event.event_type == "OrderCancelled")
        .count();
    assert_eq!(cancelled, 1, "cancelled once");
}

#[tokio::test]
async fn an_order_paid_in_time_keeps_its_deadline_from_firing() {
    let clock = cqrskit::deadline::ManualClock::new(cqrskit::chrono::Utc::now());
    let shop = shop_with_an_order(&clock).await;
    shop.orders
        .execute("o1", PayOrder { amount: 900 })
        .await
        .expect("pay");
    shop.process().await.expect("process");

    clock.advance(PAYMENT_WINDOW * 2);
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "alice", "o1").await, OrderStatus::Paid);
    let deadline = cqrskit::deadline::Deadline::id_of(
        PAYMENT_TIMEOUT,
        &StreamId::new(<Order as cqrskit::Aggregate>::TYPE, "o1"),
    );
    assert_eq!(
        shop.deadlines.state(deadline).await.expect("state"),
        Some(cqrskit::deadline::DeadlineState::Cancelled)
    );
}

#[tokio::test]
async fn the_payment_deadlines_command_is_refused_by_a_paid_order() {
    AggregateFixture::<Order>::new(())
        .given([
            OrderEvent::from(created()),
            OrderConfirmed.into(),
            OrderPaid { amount: 1800 }.into(),
        ])
        .when(CancelUnpaidOrder {
            reason: "late".into(),
        })
        .await
        .then_expect_error(OrderError::InvalidTransition {
            action: "cancel unpaid",
            status: OrderStatus::Paid,
        });
}

#[tokio::test]
async fn a_checkout_answers_at_once_and_keeps_its_reservation_past_the_hold() {
    let clock = cqrskit::deadline::ManualClock::new(cqrskit::chrono::Utc::now());
    let shop = Shop::with_deadlines(
        Arc::new(InMemoryEventStore::new()),
        Arc::new(cqrskit::deadline::InMemoryDeadlines::new().with_clock(Arc::new(clock.clone()))),
        Arc::new(clock.clone()),
    );
    let shop = stocked(shop, &[("tea", 5), ("mug", 1)]).await;
    let checkout = shop.checkout();
    checkout
        .place("o1", "alice", &[line("tea", 2, 450), line("mug", 1, 900)])
        .await
        .expect("placed");
    let refused = checkout
        .place("o2", "bob", &[line("tea", 1, 450), line("mug", 1, 900)])
        .await
        .expect_err("one mug only");
    assert!(
        matches!(&refused, CheckoutError::OutOfStock { sku, .. } if sku == "mug"),
        "{refused}"
    );
    shop.process().await.expect("process");
    assert_eq!(stock(&shop, "tea").await.reserved, 2, "o2's tea given back");

    clock.advance(CHECKOUT_HOLD * 2);
    shop.process().await.expect("process");
    assert_eq!(status(&shop, "alice", "o1").await, OrderStatus::Confirmed);
    assert_eq!(stock(&shop, "tea").await.reserved, 2);
    assert_eq!(stock(&shop, "mug").await.reserved, 1);
}

#[tokio::test]
async fn the_orders_read_model_answers_from_given_events() {
    use cqrskit::testing::ProjectionFixture;
    ProjectionFixture::new(OrdersByCustomer::default())
        .given::<Order, _>("o1", [OrderEvent::from(created()), OrderConfirmed.into()])
        .given::<Order, _>(
            "o2",
            [
                OrderEvent::from(created()),
                OrderCancelled {
                    reason: "no".into(),
                    customer_id: Some("alice".into()),
                }
                .into(),
            ],
        )
        .then_expect(
            OrdersOfCustomer {
                customer_id: "alice".into(),
            },
            vec![
                OrderSummary {
                    order_id: "o1".into(),
                    status: OrderStatus::Confirmed,
                    total: 1800,
                },
                OrderSummary {
                    order_id: "o2".into(),
                    status: OrderStatus::Cancelled,
                    total: 1800,
                },
            ],
        )
        .await;
}

/// The fulfilment process manager built over the fixture's store.
fn fulfilment_over(store: Arc<dyn EventStore>) -> Fulfilment {
    Fulfilment::new(
        Arc::new(cqrskit::CommandPipeline::<Order>::new(store.clone(), ())),
        Arc::new(cqrskit::CommandPipeline::<Inventory>::new(store, ())),
    )
}

#[tokio::test]
async fn the_fulfilment_reserves_then_confirms_a_new_order() {
    use cqrskit::testing::ProcessFixture;
    ProcessFixture::new(fulfilment_over)
        .given::<Inventory, _>("tea", [StockAdded { quantity: 5 }])
        .given::<Inventory, _>("mug", [StockAdded { quantity: 1 }])
        .given::<Order, _>("o1", [created()])
        .when_processed()
        .await
        .then_expect_events::<Inventory, _>(
            "tea",
            [StockReserved {
                order_id: "o1".into(),
                quantity: 2,
            }],
        )
        .await
        .then_expect_events::<Order, _>("o1", [OrderConfirmed])
        .await;
}

#[tokio::test]
#[should_panic(
    expected = "the process manager's commands on order/o1 produced other events than expected"
)]
async fn a_process_fixture_reports_the_events_that_differ() {
    use cqrskit::testing::ProcessFixture;
    // Only one mug for an order of one: the order is cancelled, not confirmed.
    ProcessFixture::new(fulfilment_over)
        .given::<Inventory, _>("tea", [StockAdded { quantity: 5 }])
        .given::<Order, _>("o1", [created()])
        .when_processed()
        .await
        .then_expect_events::<Order, _>("o1", [OrderConfirmed])
        .await;
}

#[tokio::test]
async fn an_event_the_fulfilment_ignores_issues_no_command() {
    use cqrskit::testing::ProcessFixture;
    ProcessFixture::new(fulfilment_over)
        .given::<Inventory, _>("tea", [StockAdded { quantity: 5 }])
        .when_processed()
        .await
        .then_expect_nothing()
        .await;
}

#[tokio::test]
async fn the_pick_lists_join_each_order_with_the_stock_set_aside_for_it() {
    let shop = stocked(
        Shop::new(Arc::new(InMemoryEventStore::new())),
        &[("tea", 10), ("mug", 1)],
    )
    .await;
    for (order_id, customer) in [("o-alice", "alice"), ("o-bob", "bob")] {
        shop.orders
            .execute(
                order_id,
                CreateOrder {
                    customer_id: customer.into(),
                    lines: vec![line("tea", 3, 450), line("mug", 1, 900)],
                },
            )
            .await
            .expect("create");
    }
    shop.process().await.expect("process");

    // Lines from the order's events, reservations from the products' events.
    let alice = shop
        .pick_lists
        .handle(PickListOf {
            order_id: "o-alice".into(),
        })
        .await
        .expect("infallible")
        .expect("alice's order is open");
    let expected = PickLine {
        ordered: 3,
        reserved: 3,
    };
    assert_eq!(alice.lines["tea"], expected);
    assert_eq!(
        alice.lines["mug"],
        PickLine {
            ordered: 1,
            reserved: 1
        }
    );
    // Bob's order was cancelled (no mug left): off the lists, its tea released.
    let bob = PickListOf {
        order_id: "o-bob".into(),
    };
    assert_eq!(shop.pick_lists.handle(bob).await.expect("infallible"), None);
    assert_eq!(
        shop.pick_lists
            .handle(ReadyToPick)
            .await
            .expect("infallible"),
        ["o-alice"]
    );
    // Only the types its methods take reach it, from both aggregates.
    assert_eq!(
        <PickList as cqrskit::document::Document>::EVENT_TYPES,
        [
            "OrderCreated",
            "StockReserved",
            "StockReleased",
            "OrderShipped",
            "OrderCancelled"
        ]
    );
}

#[tokio::test]
async fn a_pick_list_answers_from_events_of_orders_and_products() {
    use cqrskit::testing::ProjectionFixture;
    let reserved = |quantity| StockReserved {
        order_id: "o1".into(),
        quantity,
    };
    let fixture = ProjectionFixture::new(cqrskit::document::InMemoryDocuments::<PickList>::new())
        .given::<Order, _>("o1", [created()])
        .given::<Inventory, _>(
            "tea",
            [
                StockAdded { quantity: 5 }.into(),
                InventoryEvent::from(reserved(2)),
            ],
        )
        .given::<Inventory, _>(
            "mug",
            [
                InventoryEvent::from(StockAdded { quantity: 5 }),
                reserved(1).into(),
                StockReleased {
                    order_id: "o1".into(),
                    quantity: 1,
                }
                .into(),
            ],
        );
    let lists = PickLists::new(fixture.then(|_| {}).await);
    assert_eq!(
        lists
            .handle(PickListOf {
                order_id: "o1".into(),
            })
            .await
            .expect("in memory"),
        Some(PickList {
            lines: [
                (
                    "mug".to_owned(),
                    PickLine {
                        ordered: 1,
                        reserved: 0,
                    },
                ),
                (
                    "tea".to_owned(),
                    PickLine {
                        ordered: 2,
                        reserved: 2,
                    },
                ),
            ]
            .into(),
        }),
    );
    assert!(
        lists
            .handle(ReadyToPick)
            .await
            .expect("infallible")
            .is_empty()
    );
}

#[tokio::test]
async fn the_trends_count_revenue_per_window_and_each_customers_recent_cancellations() {
    use cqrskit::chrono::{TimeDelta, Utc};
    let shop = stocked(
        Shop::new(Arc::new(InMemoryEventStore::new())),
        &[("tea", 100)],
    )
    .await;
    let before = Utc::now();
    let mut paid = 0;
    for n in 0..6_u64 {
        let order_id = format!("o{n}");
        let customer = if n % 2 == 0 { "alice" } else { "bob" };
        shop.orders
            .execute(
                &order_id,
                CreateOrder {
                    customer_id: customer.into(),
                    lines: vec![line("tea", 1, 100 + n)],
                },
            )
            .await
            .expect("create");
        shop.process().await.expect("process");
        if n < 4 {
            shop.orders
                .execute(&order_id, PayOrder { amount: 100 + n })
                .await
                .expect("pay");
            paid += 100 + n;
        } else {
            shop.orders
                .execute(
                    &order_id,
                    CancelOrder {
                        reason: "no".into(),
                    },
                )
                .await
                .expect("cancel");
        }
    }
    shop.process().await.expect("process");
    let after = Utc::now();

    let windows = shop
        .trends
        .handle(RevenueBetween {
            from: before - TimeDelta::minutes(5),
            to: after + TimeDelta::minutes(5),
        })
        .await
        .expect("in memory");
    assert!(!windows.is_empty() && windows.len() <= 2, "{windows:?}");
    assert!(
        windows
            .iter()
            .all(|w| w.end - w.start == TimeDelta::minutes(5))
    );
    assert_eq!(windows.iter().map(|w| w.value.cents).sum::<u64>(), paid);
    assert_eq!(windows.iter().map(|w| w.value.payments).sum::<u32>(), 4);
    // o4 (alice) and o5 (bob) were cancelled just now.
    for (customer, count) in [("alice", 1), ("bob", 1), ("carol", 0)] {
        let recent = shop
            .trends
            .handle(RecentCancellations {
                customer_id: customer.into(),
                at: after,
            })
            .await
            .expect("in memory");
        assert_eq!(recent, count, "{customer}");
    }
    // An hour later, nothing is recent any more.
    let later = shop
        .trends
        .handle(RecentCancellations {
            customer_id: "alice".into(),
            at: after + TimeDelta::hours(1),
        })
        .await
        .expect("in memory");
    assert_eq!(later, 0);
}
