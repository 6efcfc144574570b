//! Document read models in PostgreSQL: the shop's pick lists (a document
//! over orders' and products' events, written without SQL) against a model
//! of the commands and against the same documents in memory, after a
//! rebuild, in partitions, with corrupted and unstorable documents.

use std::collections::BTreeMap;

use cqrs_examples::ecommerce::{
    AddStock, CancelOrder, ConfirmOrder, CreateOrder, Inventory, Order, OrderCreated, OrderEvent,
    OrderLine, OrderShipped, PayOrder, PickLine, PickList, ReleaseStock, ReserveStock, ShipOrder,
};
use cqrskit::document::{Document, DocumentError, DocumentQueries, InMemoryDocuments, Versioned};
use cqrskit::postgres::{PartitionedRunner, PgDocuments};
use cqrskit::{ErrorKind, InMemoryRunner, StoreError, document};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;

const SKUS: [&str; 4] = ["tea", "mug", "pot", "cup"];

/// Places `orders` orders over the shop's pipelines: each reserves its
/// lines, one in five is cancelled (its stock released), one in five ships,
/// one in five gives part of its stock back. Returns the pick lists the
/// commands leave: open orders, with what was ordered and set aside.
pub(super) async fn shop_workload(
    db: &TestStore,
    orders: usize,
) -> (BTreeMap<String, PickList>, usize) {
    let order_pipeline = CommandPipeline::<Order>::new(db.shared(), ());
    let inventory = CommandPipeline::<Inventory>::new(db.shared(), ());
    let mut events = 0;
    for sku in SKUS {
        inventory
            .execute(sku, AddStock { quantity: 10_000 })
            .await
            .expect("stock");
        events += 1;
    }
    let mut expected = BTreeMap::new();
    for n in 0..orders {
        let order_id = format!("o-{n:03}");
        let lines: Vec<OrderLine> = (0..1 + n % 3)
            .map(|k| OrderLine {
                sku: SKUS[(n + k) % SKUS.len()].to_owned(),
                quantity: u32::try_from(1 + (n + k) % 4).expect("small"),
                unit_price: 100,
            })
            .collect();
        let total: u64 = lines
            .iter()
            .map(|line| line.unit_price * u64::from(line.quantity))
            .sum();
        order_pipeline
            .execute(
                &order_id,
                CreateOrder {
                    customer_id: format!("c-{}", n % 7),
                    lines: lines.clone(),
                },
            )
            .await
            .expect("create");
        events += 1;
        let mut list = PickList::default();
        for line in &lines {
            list.lines.insert(
                line.sku.clone(),
                PickLine {
                    ordered: line.quantity,
                    reserved: line.quantity,
                },
            );
            inventory
                .execute(
                    &line.sku,
                    ReserveStock {
                        order_id: order_id.clone(),
                        quantity: line.quantity,
                    },
                )
                .await
                .expect("reserve");
            events += 1;
        }
        match n % 5 {
            0 => {
                for line in &lines {
                    inventory
                        .execute(
                            &line.sku,
                            ReleaseStock {
                                order_id: order_id.clone(),
                            },
                        )
                        .await
                        .expect("release");
                    events += 1;
                }
                order_pipeline
                    .execute(
                        &order_id,
                        CancelOrder {
                            reason: "changed mind".into(),
                        },
                    )
                    .await
                    .expect("cancel");
                events += 1;
            }
            1 => {
                order_pipeline
                    .execute(&order_id, ConfirmOrder)
                    .await
                    .expect("confirm");
                order_pipeline
                    .execute(&order_id, PayOrder { amount: total })
                    .await
                    .expect("pay");
                order_pipeline
                    .execute(&order_id, ShipOrder)
                    .await
                    .expect("ship");
                events += 3;
            }
            2 => {
                let line = &lines[0];
                inventory
                    .execute(
                        &line.sku,
                        ReleaseStock {
                            order_id: order_id.clone(),
                        },
                    )
                    .await
                    .expect("release");
                events += 1;
                list.lines.get_mut(&line.sku).expect("line").reserved = 0;
                expected.insert(order_id, list);
            }
            _ => {
                expected.insert(order_id, list);
            }
        }
    }
    (expected, events)
}

fn documents_of(found: Vec<Versioned<PickList>>) -> BTreeMap<String, PickList> {
    found
        .into_iter()
        .map(|doc| (doc.id, doc.document))
        .collect()
}

fn document_runner<D: Document>(
    db: &TestStore,
) -> (Arc<PgDocuments<D>>, ProjectionRunner<PgDocuments<D>>) {
    let documents = Arc::new(PgDocuments::<D>::new(&db.store));
    let runner = ProjectionRunner::new(db.store.clone(), documents.clone())
        .with_options(options(OnExhausted::Stop));
    (documents, runner)
}

/// The shop's workload of `orders` orders, and the pick lists caught up
/// with it in PostgreSQL: the lists the commands leave, the events written,
/// the documents and their runner (holding its lease).
async fn caught_up_pick_lists(
    db: &TestStore,
    orders: usize,
) -> (
    BTreeMap<String, PickList>,
    usize,
    Arc<PgDocuments<PickList>>,
    ProjectionRunner<PgDocuments<PickList>>,
) {
    let (expected, events) = shop_workload(db, orders).await;
    settle(db, events).await;
    let (documents, runner) = document_runner::<PickList>(db);
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    (expected, events, documents, runner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_lists_over_two_aggregates_follow_the_commands_in_postgres_and_in_memory_and_after_rebuilds()
 {
    let db = TestStore::new().await;
    let (expected, events) = shop_workload(&db, 60).await;
    assert!(events > 250, "hundreds of events: {events}");
    settle(&db, events).await;

    let (documents, runner) = document_runner::<PickList>(&db);
    assert!(runner.acquire_lease().await.expect("lease"));
    let applied = runner.catch_up().await.expect("catch up");
    assert!(applied > 0 && applied <= events);
    let in_postgres = documents.matching(&json!({})).await.expect("all");
    assert_eq!(documents_of(in_postgres.clone()), expected);

    // The same documents, from the same log, kept in memory.
    let memory = Arc::new(InMemoryDocuments::<PickList>::new());
    let memory_runner = InMemoryRunner::new(db.shared(), memory.clone());
    memory_runner.poll().await.expect("poll");
    let in_memory = memory.matching(&json!({})).await.expect("all");
    assert_eq!(in_memory, in_postgres, "same ids, documents and revisions");

    // Rebuilt from the log, in both stores: the same again.
    runner.rebuild().await.expect("rebuild");
    assert!(
        documents
            .matching(&json!({}))
            .await
            .expect("all")
            .is_empty()
    );
    runner.catch_up().await.expect("replay");
    assert_eq!(
        documents.matching(&json!({})).await.expect("all"),
        in_postgres
    );
    memory_runner.rebuild().await.expect("rebuild");
    assert!(memory.is_empty());
    memory_runner.poll().await.expect("replay");
    assert_eq!(memory.matching(&json!({})).await.expect("all"), in_postgres);

    // A new version beside the live one: its own table and checkpoint.
    let green = Arc::new(PgDocuments::<PickList>::version(&db.store, 2));
    assert_eq!(green.name(), "pick_lists_v2");
    let green_runner = ProjectionRunner::new(db.store.clone(), green.clone())
        .with_options(options(OnExhausted::Stop));
    assert!(green_runner.acquire_lease().await.expect("its own lease"));
    green_runner.catch_up().await.expect("catch up");
    assert_eq!(green_runner.lag().await.expect("lag").events, 0);
    assert_eq!(green.matching(&json!({})).await.expect("all"), in_postgres);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_answer_by_id_by_ids_and_by_json_alike_in_both_stores() {
    let db = TestStore::new().await;
    let (expected, _, documents, _runner) = caught_up_pick_lists(&db, 20).await;
    let memory = Arc::new(InMemoryDocuments::<PickList>::new());
    InMemoryRunner::new(db.shared(), memory.clone())
        .poll()
        .await
        .expect("poll");
    let stores: [&dyn DocumentQueries<PickList>; 2] = [&*documents, &*memory];
    for store in stores {
        let one = store
            .load("o-003")
            .await
            .expect("load")
            .expect("open order");
        assert_eq!(one.document, expected["o-003"]);
        assert!(
            store.load("o-000").await.expect("load").is_none(),
            "cancelled"
        );
        let many = store
            .load_many(&["o-004", "nope", "o-002", "o-004"])
            .await
            .expect("load many");
        let ids: Vec<&str> = many.iter().map(|doc| doc.id.as_str()).collect();
        assert_eq!(ids, ["o-004", "o-002"], "in the order asked, each once");
        // Open lists with a line of tea, each line matched by what it holds.
        let with_tea = store
            .matching(&json!({"lines": {"tea": {}}}))
            .await
            .expect("matching");
        let want: Vec<&String> = expected
            .iter()
            .filter(|(_, list)| list.lines.contains_key("tea"))
            .map(|(id, _)| id)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(with_tea.iter().map(|doc| &doc.id).collect::<Vec<_>>(), want);
        let partly_released = store
            .matching(&json!({"lines": {"tea": {"reserved": 0}}}))
            .await
            .expect("matching");
        assert!(
            partly_released
                .iter()
                .all(|doc| doc.document.lines["tea"].reserved == 0)
        );
        // Page by page, the same documents as all at once.
        let all = store.matching(&json!({})).await.expect("all");
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .matching_page(&json!({}), after.as_deref(), 3)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 3);
            after = Some(last.id.clone());
            paged.extend(page);
        }
        assert_eq!(paged, all);
        let refused = store.matching(&json!(["tea"])).await.expect_err("array");
        assert!(
            matches!(
                &refused,
                StoreError::Document(DocumentError::Pattern { .. })
            ),
            "{refused:?}"
        );
    }
    db.drop_schema().await;
}

/// An order's view, keyed by its own stream: safe to partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct OrderView {
    customer: String,
    lines: usize,
    shipped: bool,
}

#[document(event = OrderEvent, name = "order_views")]
impl OrderView {
    #[apply]
    fn created(&mut self, event: &OrderCreated) {
        self.customer = event.customer_id.clone();
        self.lines = event.lines.len();
    }

    #[apply]
    fn shipped(&mut self, _: &OrderShipped) {
        self.shipped = true;
    }
}

/// Any stream's events, by its own id, over orders and products.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ShopView {
    events: u32,
}

#[document(event = cqrs_examples::ecommerce::ShopEvent, name = "shop_views")]
impl ShopView {
    #[apply]
    fn created(&mut self, _: &OrderCreated) {
        self.events += 1;
    }

    #[apply]
    fn reserved(&mut self, _: &cqrs_examples::ecommerce::StockReserved) {
        self.events += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_keyed_document_runs_in_partitions_and_one_gathering_streams_refuses_them() {
    let db = TestStore::new().await;
    let (_, events) = shop_workload(&db, 40).await;
    settle(&db, events).await;

    let views = Arc::new(PgDocuments::<OrderView>::new(&db.store));
    let partitioned = PartitionedRunner::new(db.store.clone(), views.clone(), 3)
        .expect("three partitions")
        .with_options(options(OnExhausted::Stop));
    for partition in partitioned.partitions() {
        assert!(partition.acquire_lease().await.expect("lease"));
        partition.catch_up().await.expect("catch up");
    }
    let memory = Arc::new(InMemoryDocuments::<OrderView>::new());
    InMemoryRunner::new(db.shared(), memory.clone())
        .poll()
        .await
        .expect("poll");
    let all = views.matching(&json!({})).await.expect("all");
    assert_eq!(all.len(), 40);
    assert_eq!(all, memory.matching(&json!({})).await.expect("all"));
    let of_c3 = views
        .matching(&json!({"customer": "c-3", "shipped": true}))
        .await
        .expect("matching");
    assert!(
        of_c3
            .iter()
            .all(|doc| doc.document.customer == "c-3" && doc.document.shipped)
    );

    // A stream's document over two aggregates' events (an event union):
    // an order and a product of one id would fall in different partitions.
    let union_views = Arc::new(PgDocuments::<ShopView>::new(&db.store));
    let refused = PartitionedRunner::new(db.store.clone(), union_views, 2)
        .expect("two partitions")
        .with_options(options(OnExhausted::Stop));
    let error = refused.partitions()[0].setup().await.expect_err("refused");
    assert!(error.to_string().contains("event union"), "{error}");

    // Pick lists take reservations by the order id they carry: refused.
    let lists = Arc::new(PgDocuments::<PickList>::new(&db.store));
    let refused = PartitionedRunner::new(db.store.clone(), lists, 2)
        .expect("two partitions")
        .with_options(options(OnExhausted::Stop));
    let partition = &refused.partitions()[0];
    let error = match partition.acquire_lease().await {
        Err(error) => error,
        Ok(_) => partition.catch_up().await.expect_err("refused"),
    };
    assert!(
        matches!(&error, Error::Misconfigured { projection, reason }
            if projection == "pick_lists" && reason.contains("run it unpartitioned")),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Configuration);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_no_longer_reads_is_named_and_the_event_that_meets_it_is_not_skipped() {
    let db = TestStore::new().await;
    let (_, events, documents, runner) = caught_up_pick_lists(&db, 5).await;
    let checkpoint = runner.checkpoint().await.expect("checkpoint");

    // Behind the framework's back: a list whose lines are no map.
    sqlx::query(&format!(
        "UPDATE {} SET body = '{{\"lines\": 5}}' WHERE id = 'o-003'",
        documents.table()
    ))
    .execute(db.pool())
    .await
    .expect("corrupt");
    let error = documents.load("o-003").await.expect_err("unreadable");
    assert!(
        matches!(&error, StoreError::Document(DocumentError::Decode { id, read_model, .. })
            if id == "o-003" && read_model == "pick_lists"),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::CorruptData);

    // The next event for it stops the projection there, naming both.
    CommandPipeline::<Order>::new(db.shared(), ())
        .execute(
            "o-003",
            CancelOrder {
                reason: "late".into(),
            },
        )
        .await
        .expect("cancel");
    settle(&db, events + 1).await;
    let stopped = runner.catch_up().await.expect_err("stopped");
    let message = stopped.to_string();
    assert!(
        message.contains("o-003") && message.contains("OrderCancelled"),
        "{message}"
    );
    assert_eq!(runner.checkpoint().await.expect("checkpoint"), checkpoint);
    db.drop_schema().await;
}

/// A document that can come to hold what JSON does not carry back: the
/// mean length of reasons, over reasons counted so far (none: 0 / 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Reasons {
    reasons: Vec<String>,
    mean_length: f64,
}

#[document(event = OrderEvent, name = "cancel_reasons")]
impl Reasons {
    #[apply]
    fn cancelled(&mut self, event: &cqrs_examples::ecommerce::OrderCancelled) {
        if event.reason != "divide by none" {
            self.reasons.push(event.reason.clone());
        }
        let total: usize = self.reasons.iter().map(String::len).sum();
        #[allow(clippy::cast_precision_loss)]
        let mean = total as f64 / self.reasons.len() as f64;
        self.mean_length = mean;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_the_store_cannot_keep_fails_its_event_and_writes_nothing() {
    let db = TestStore::new().await;
    let orders = CommandPipeline::<Order>::new(db.shared(), ());
    let line = OrderLine {
        sku: "tea".into(),
        quantity: 1,
        unit_price: 1,
    };
    for (id, reason) in [("a", "fine"), ("b", "divide by none")] {
        orders
            .execute(
                id,
                CreateOrder {
                    customer_id: "c".into(),
                    lines: vec![line.clone()],
                },
            )
            .await
            .expect("create");
        orders
            .execute(
                id,
                CancelOrder {
                    reason: reason.into(),
                },
            )
            .await
            .expect("cancel");
    }
    settle(&db, 4).await;
    let (documents, runner) = document_runner::<Reasons>(&db);
    assert!(runner.acquire_lease().await.expect("lease"));
    let stopped = runner.catch_up().await.expect_err("stopped at b");
    let message = stopped.to_string();
    assert!(
        message.contains("document `b`") && message.contains("non-finite"),
        "{message}"
    );
    assert_eq!(
        documents
            .load("a")
            .await
            .expect("load")
            .map(|doc| doc.document.reasons),
        Some(vec!["fine".to_owned()])
    );
    assert!(documents.load("b").await.expect("load").is_none());
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waits_for_its_command_then_reads_the_document() {
    let db = TestStore::new().await;
    let (documents, runner) = document_runner::<OrderView>(&db);
    // Before its runner set it up, a query says so.
    let early = documents.load("o-0").await.expect_err("no table yet");
    assert!(
        matches!(&early, StoreError::Document(DocumentError::NotSetUp { read_model }) if read_model == "order_views"),
        "{early}"
    );
    assert_eq!(early.kind(), ErrorKind::Configuration);
    let runner = Arc::new(runner);
    let running = cqrs_tests::running::Running::start(&runner);
    let orders = CommandPipeline::<Order>::new(db.shared(), ());
    for n in 0..20 {
        let outcome = orders
            .execute(
                &format!("o-{n}"),
                CreateOrder {
                    customer_id: "c".into(),
                    lines: vec![OrderLine {
                        sku: "tea".into(),
                        quantity: 1,
                        unit_price: 5,
                    }],
                },
            )
            .await
            .expect("create");
        let position = outcome.events.last().expect("an event").position;
        assert!(
            runner
                .wait_for(position, Duration::from_secs(10))
                .await
                .expect("wait")
        );
        let view = documents
            .load(&format!("o-{n}"))
            .await
            .expect("load")
            .expect("applied before the answer");
        assert_eq!(view.document.customer, "c");
        assert_eq!(view.revision, 1);
    }
    running.stop().await.expect("ran");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_come_in_the_byte_order_of_their_ids_in_both_stores() {
    let db = TestStore::new().await;
    let orders = CommandPipeline::<Order>::new(db.shared(), ());
    let ids = ["b", "B", "a", "é", "Z", "a-1", "A"];
    for id in ids {
        orders
            .execute(
                id,
                CreateOrder {
                    customer_id: "c".into(),
                    lines: vec![OrderLine {
                        sku: "tea".into(),
                        quantity: 1,
                        unit_price: 1,
                    }],
                },
            )
            .await
            .expect("create");
    }
    settle(&db, ids.len()).await;
    let (documents, runner) = document_runner::<OrderView>(&db);
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    let memory = Arc::new(InMemoryDocuments::<OrderView>::new());
    InMemoryRunner::new(db.shared(), memory.clone())
        .poll()
        .await
        .expect("poll");
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    let stores: [&dyn DocumentQueries<OrderView>; 2] = [&*documents, &*memory];
    for store in stores {
        let found = store
            .matching(&json!({"customer": "c"}))
            .await
            .expect("all");
        let found: Vec<&str> = found.iter().map(|doc| doc.id.as_str()).collect();
        assert_eq!(found, sorted);
        let page = store
            .matching_page(&json!({}), Some("Z"), 2)
            .await
            .expect("page");
        let page: Vec<&str> = page.iter().map(|doc| doc.id.as_str()).collect();
        assert_eq!(page, ["a", "a-1"]);
    }
    db.drop_schema().await;
}

/// An order's event, as a runner would hand it over.
fn order_event(order: &str, version: u64, event: OrderEvent) -> cqrskit::EventEnvelope<OrderEvent> {
    cqrskit::EventEnvelope {
        event_id: cqrskit::uuid::Uuid::now_v7(),
        stream: cqrskit::StreamId::new("order", order),
        version,
        position: cqrskit::Position::new(1, version),
        event_type: cqrskit::DomainEvent::event_type(&event).to_owned(),
        event_version: 1,
        payload: event,
        metadata: cqrskit::Metadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_one_document_wait_for_each_other_or_fail_never_overwrite() {
    let db = TestStore::new().await;
    let (documents, runner) = document_runner::<OrderView>(&db);
    runner.setup().await.expect("setup");
    let created = |version| {
        order_event(
            "x",
            version,
            OrderCreated {
                customer_id: "c".into(),
                lines: vec![],
            }
            .into(),
        )
    };
    let shipped = |version| order_event("x", version, OrderShipped.into());

    // Two writers create the same document at once: the second finds it
    // created meanwhile and fails, rather than overwrite it.
    let (waited, second) = race(&db, &documents, vec![created(1)], vec![created(1)]).await;
    assert!(waited, "the second waits on the first's new row");
    let error = second.expect_err("created meanwhile");
    assert!(
        error.contains("created meanwhile by another writer"),
        "{error}"
    );

    // Two writers change the existing document: the second waits for the
    // first and applies on top of it.
    let (waited, second) = race(&db, &documents, vec![shipped(2)], vec![created(3)]).await;
    assert!(waited, "the second waits on the first's lock");
    second.expect("the second applies after the first");
    let view = documents.load("x").await.expect("load").expect("exists");
    assert_eq!(
        view.revision, 3,
        "created, shipped, created again: three changes"
    );
    assert!(view.document.shipped, "the second saw the first's change");
    db.drop_schema().await;
}
