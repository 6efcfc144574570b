//! Deadlines on both stores, in memory and in PostgreSQL: scheduled once,
//! cancelled for good, delivered when due and only then, once in effect
//! even when the runner that claimed one died after executing it, and
//! fenced: a runner whose claim was taken over cannot record a delivery.
//! Cancelling races delivering linearizably; what is due is decided by the
//! store's clock, never a runner host's.

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::ecommerce::{
    CancelUnpaidOrder, ConfirmOrder, CreateOrder, Order, OrderLine, PayOrder,
};
use cqrs_tests::postgres::TestStore;
use cqrskit::chrono::{DateTime, SubsecRound, Utc};
use cqrskit::deadline::{
    Cancellation, Deadline, DeadlineOptions, DeadlineRunner, DeadlineState, DeadlineStore,
    InMemoryDeadlines, ManualClock,
};
use cqrskit::{Aggregate, CommandPipeline, EventStore, InMemoryEventStore, StreamId};

const NAME: &str = "order.payment-timeout";

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn at(start: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    start + cqrskit::chrono::Duration::from_std(after).expect("a duration")
}

fn order(id: &str) -> StreamId {
    StreamId::new(<Order as Aggregate>::TYPE, id)
}

fn timeout(id: &str, due_at: DateTime<Utc>) -> Deadline {
    let cancel = CancelUnpaidOrder {
        reason: "unpaid".into(),
    };
    Deadline::new(NAME, order(id), due_at, &cancel).expect("a deadline")
}

/// How many times order `id` was cancelled.
async fn cancellations(events: &dyn EventStore, id: &str) -> usize {
    events
        .read_stream(&order(id), 1, 100)
        .await
        .expect("read")
        .iter()
        .filter(|event| event.event_type == "OrderCancelled")
        .count()
}

async fn state(deadlines: &dyn DeadlineStore, deadline: &Deadline) -> Option<DeadlineState> {
    deadlines.state(deadline.id).await.expect("state")
}

/// Places order `id`: a cup of tea for alice.
async fn place(orders: &CommandPipeline<Order>, id: &str) {
    let create = CreateOrder {
        customer_id: "alice".into(),
        lines: vec![OrderLine {
            sku: "tea".into(),
            quantity: 1,
            unit_price: 450,
        }],
    };
    orders.execute(id, create).await.expect("create");
}

/// The scenario on `deadlines`, whose store decides what is due by `clock`.
async fn scenario(
    deadlines: Arc<dyn DeadlineStore>,
    clock: ManualClock,
    events: Arc<dyn EventStore>,
) {
    let start = clock_now(&clock);
    let orders = Arc::new(CommandPipeline::<Order>::new(events.clone(), ()));
    for id in ["o1", "o2", "o3", "o4"] {
        place(&orders, id).await;
    }
    let runner = |owner: &str| {
        DeadlineRunner::new(deadlines.clone())
            .route::<Order, CancelUnpaidOrder>(NAME, orders.clone())
            .with_owner(owner)
            .with_options(DeadlineOptions::default().claim(Duration::from_secs(30)))
    };
    let a = runner("a");

    // Scheduled once, by id; cancelled for good.
    let first = timeout("o1", at(start, minutes(10)));
    let second = timeout("o2", at(start, minutes(10)));
    let third = timeout("o3", at(start, minutes(20)));
    for deadline in [&first, &second, &third] {
        assert!(deadlines.schedule(deadline).await.expect("schedule"));
    }
    assert!(
        !deadlines
            .schedule(&timeout("o1", at(start, minutes(1))))
            .await
            .expect("schedule"),
        "the same id again changes nothing"
    );
    assert_eq!(
        deadlines.cancel(second.id).await.expect("cancel"),
        Cancellation::Cancelled
    );
    assert_eq!(
        deadlines.cancel(second.id).await.expect("cancel"),
        Cancellation::AlreadyCancelled
    );
    assert_eq!(
        deadlines
            .cancel(uuid::Uuid::now_v7())
            .await
            .expect("cancel"),
        Cancellation::Unknown
    );
    assert!(!deadlines.schedule(&second).await.expect("schedule"));
    assert_eq!(
        state(&*deadlines, &second).await,
        Some(DeadlineState::Cancelled)
    );
    assert_eq!(
        deadlines.until_next_due().await.expect("next"),
        Some(minutes(10))
    );

    // Nothing before it is due; then exactly what is due, once.
    assert!(a.deliver_due().await.expect("deliver").done.is_empty());
    clock.advance(minutes(11));
    let delivered = a.deliver_due().await.expect("deliver");
    assert_eq!(delivered.done, [(first.id, "executed".to_owned())]);
    assert!(a.deliver_due().await.expect("deliver").done.is_empty());
    assert_eq!(cancellations(&*events, "o1").await, 1);
    assert_eq!(cancellations(&*events, "o2").await, 0);
    assert_eq!(
        deadlines.cancel(first.id).await.expect("cancel"),
        Cancellation::Delivered {
            outcome: "executed".into()
        },
        "too late: delivered"
    );
    assert_eq!(
        state(&*deadlines, &first).await,
        Some(DeadlineState::Delivered {
            outcome: "executed".into()
        })
    );

    // Runner b claims the third, executes it, and dies before recording
    // it. Its claim holds a while; then a delivers it again, once in effect.
    clock.advance(minutes(10));
    let claimed = deadlines
        .claim_due("b", &[NAME.to_owned()], Duration::from_secs(30), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|d| d.id).collect::<Vec<_>>(), [third.id]);
    // Claimed: too late to cancel, whatever becomes of b.
    assert_eq!(
        deadlines.cancel(third.id).await.expect("cancel"),
        Cancellation::Delivering
    );
    assert_eq!(
        state(&*deadlines, &third).await,
        Some(DeadlineState::Delivering)
    );
    assert_eq!(
        deadlines.until_next_due().await.expect("next"),
        Some(Duration::from_secs(30)),
        "claimable again when b's claim lapses"
    );
    orders
        .execute_once(
            third.id,
            "o3",
            CancelUnpaidOrder {
                reason: "unpaid".into(),
            },
            third.metadata.clone(),
        )
        .await
        .expect("b executes");
    assert!(
        a.deliver_due().await.expect("deliver").done.is_empty(),
        "b's claim holds"
    );
    clock.advance(Duration::from_secs(31));
    let delivered = a.deliver_due().await.expect("deliver");
    assert_eq!(delivered.done, [(third.id, "executed".to_owned())]);
    assert_eq!(cancellations(&*events, "o3").await, 1, "once in effect");
    assert!(
        !deadlines
            .complete(third.id, "b", "executed")
            .await
            .expect("complete"),
        "b's claim was taken over: fenced"
    );

    // A command the aggregate refuses is what came of the deadline.
    orders.execute("o4", ConfirmOrder).await.expect("confirm");
    orders
        .execute("o4", PayOrder { amount: 450 })
        .await
        .expect("pay");
    let fourth = timeout("o4", clock_now(&clock));
    deadlines.schedule(&fourth).await.expect("schedule");
    // And a deadline of a name this runner has no route for is left for a
    // runner that has one (another service sharing the store): not
    // claimed, not closed.
    let stray = Deadline::new("nobody", order("o4"), clock_now(&clock), &()).expect("a deadline");
    deadlines.schedule(&stray).await.expect("schedule");
    let delivered = a.deliver_due().await.expect("deliver");
    assert_eq!(delivered.done.len(), 1);
    assert_eq!(
        state(&*deadlines, &fourth).await,
        Some(DeadlineState::Delivered {
            outcome: "rejected: cannot cancel unpaid an order that is Paid".into()
        })
    );
    assert_eq!(
        state(&*deadlines, &stray).await,
        Some(DeadlineState::Pending)
    );
    assert_eq!(cancellations(&*events, "o4").await, 0);
    assert_eq!(
        deadlines.cancel(stray.id).await.expect("cancel"),
        Cancellation::Cancelled
    );
    assert_eq!(deadlines.until_next_due().await.expect("next"), None);
}

/// Two deadlines of one name for one order, each under its key: both are
/// scheduled (the keys make two ids), the one cancelled by a key computed
/// again never runs, the other does, and scheduling a key again schedules
/// nothing.
async fn keyed(deadlines: Arc<dyn DeadlineStore>, clock: ManualClock, events: Arc<dyn EventStore>) {
    let start = clock_now(&clock);
    let orders = Arc::new(CommandPipeline::<Order>::new(events.clone(), ()));
    place(&orders, "k1").await;
    let early = timeout("k1", at(start, minutes(5))).with_key("first reminder");
    let late = timeout("k1", at(start, minutes(10))).with_key("second reminder");
    assert_ne!(early.id, late.id);
    assert_ne!(early.id, Deadline::id_of(NAME, &order("k1")));
    for deadline in [&early, &late] {
        assert!(deadlines.schedule(deadline).await.expect("schedule"));
    }
    assert!(
        !deadlines
            .schedule(&timeout("k1", at(start, minutes(1))).with_key("first reminder"))
            .await
            .expect("schedule"),
        "a key scheduled again changes nothing"
    );
    let recomputed = Deadline::id_of_key(NAME, &order("k1"), "first reminder");
    assert_eq!(
        deadlines.cancel(recomputed).await.expect("cancel"),
        Cancellation::Cancelled
    );
    clock.advance(minutes(11));
    let runner = DeadlineRunner::new(deadlines.clone())
        .route::<Order, CancelUnpaidOrder>(NAME, orders.clone());
    let delivered = runner.deliver_due().await.expect("deliver");
    let ids: Vec<_> = delivered.done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [late.id], "only the key not cancelled runs");
    assert_eq!(
        state(&*deadlines, &early).await,
        Some(DeadlineState::Cancelled)
    );
    assert_eq!(
        state(&*deadlines, &late).await,
        Some(DeadlineState::Delivered {
            outcome: "executed".to_owned()
        })
    );
    assert_eq!(cancellations(&*events, "k1").await, 1);
}

#[tokio::test]
async fn keyed_deadlines_in_memory_are_several_per_aggregate_and_cancelled_by_key() {
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    keyed(
        Arc::new(InMemoryDeadlines::new().with_clock(Arc::new(clock.clone()))),
        clock,
        Arc::new(InMemoryEventStore::new()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_deadlines_in_postgres_are_several_per_aggregate_and_cancelled_by_key() {
    let db = TestStore::new().await;
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    let deadlines = db
        .store
        .deadlines()
        .with_test_clock(Arc::new(clock.clone()));
    keyed(Arc::new(deadlines), clock, db.shared()).await;
    db.drop_schema().await;
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    cqrskit::deadline::Clock::now(clock)
}

#[tokio::test]
async fn deadlines_in_memory_are_delivered_once_when_due_and_fenced() {
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    scenario(
        Arc::new(InMemoryDeadlines::new().with_clock(Arc::new(clock.clone()))),
        clock,
        Arc::new(InMemoryEventStore::new()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_in_postgres_are_delivered_once_when_due_and_fenced() {
    let db = TestStore::new().await;
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    let deadlines = db
        .store
        .deadlines()
        .with_test_clock(Arc::new(clock.clone()));
    scenario(Arc::new(deadlines), clock, db.shared()).await;
    db.drop_schema().await;
}

/// Two runners delivering the same due deadlines at once, as two processes
/// would: each deadline is claimed by one of them, and each order is
/// cancelled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_share_the_due_deadlines_in_postgres_without_doubling() {
    let db = TestStore::new().await;
    let deadlines = Arc::new(db.store.deadlines());
    let orders = Arc::new(CommandPipeline::<Order>::new(db.shared(), ()));
    let now = Utc::now();
    let ids: Vec<String> = (0..40).map(|n| format!("o{n}")).collect();
    for id in &ids {
        let create = CreateOrder {
            customer_id: "bob".into(),
            lines: vec![OrderLine {
                sku: "mug".into(),
                quantity: 1,
                unit_price: 900,
            }],
        };
        orders.execute(id, create).await.expect("create");
        deadlines
            .schedule(&timeout(id, now))
            .await
            .expect("schedule");
    }
    let runner = |owner: &str| {
        DeadlineRunner::new(deadlines.clone())
            .route::<Order, CancelUnpaidOrder>(NAME, orders.clone())
            .with_owner(owner)
            .with_options(DeadlineOptions::default().batch_size(3))
    };
    let (first, second) = (runner("first"), runner("second"));
    let (one, two) = tokio::join!(first.deliver_due(), second.deliver_due());
    let (one, two) = (one.expect("deliver"), two.expect("deliver"));
    assert_eq!(one.done.len() + two.done.len(), ids.len());
    for id in &ids {
        assert_eq!(cancellations(&*db.shared(), id).await, 1, "{id}");
    }
    db.drop_schema().await;
}

/// A running runner delivers a deadline once it falls due, without being
/// asked, and stops at shutdown.
#[tokio::test]
async fn a_running_runner_delivers_what_falls_due_and_stops_at_shutdown() {
    let clock = ManualClock::new(Utc::now());
    let deadlines = Arc::new(InMemoryDeadlines::new().with_clock(Arc::new(clock.clone())));
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let orders = Arc::new(CommandPipeline::<Order>::new(events.clone(), ()));
    let create = CreateOrder {
        customer_id: "carol".into(),
        lines: vec![OrderLine {
            sku: "tea".into(),
            quantity: 1,
            unit_price: 450,
        }],
    };
    orders.execute("o1", create).await.expect("create");
    let deadline = timeout("o1", at(clock_now(&clock), minutes(5)));
    deadlines.schedule(&deadline).await.expect("schedule");
    let runner = DeadlineRunner::new(deadlines.clone())
        .route::<Order, CancelUnpaidOrder>(NAME, orders)
        .with_options(DeadlineOptions::default().poll_interval(Duration::from_millis(20)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stopped.await;
            })
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        state(&*deadlines, &deadline).await,
        Some(DeadlineState::Pending)
    );
    clock.advance(minutes(5));
    let started = std::time::Instant::now();
    while state(&*deadlines, &deadline).await == Some(DeadlineState::Pending) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cancellations(&*events, "o1").await, 1);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops at shutdown")
        .expect("join");
}

/// 200 deadlines due now; two runners deliver them, claiming 20 at a time,
/// while a task cancels every one of them, the last first. A cancel that
/// answers `Cancelled` means its order was never cancelled by the deadline;
/// any other answer means the deadline is delivered, its command executed
/// once. (A cancel that answered yes while a runner held the deadline let
/// the command run anyway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_delivery_either_wins_or_says_the_command_runs() {
    let db = TestStore::new().await;
    let deadlines: Arc<dyn DeadlineStore> = Arc::new(db.store.deadlines());
    let orders = Arc::new(CommandPipeline::<Order>::new(db.shared(), ()));
    let now = Utc::now() - cqrskit::chrono::Duration::seconds(1);
    let mut scheduled = Vec::new();
    for n in 0..200 {
        let id = format!("o{n}");
        let create = CreateOrder {
            customer_id: "erin".into(),
            lines: vec![OrderLine {
                sku: "tea".into(),
                quantity: 1,
                unit_price: 450,
            }],
        };
        orders.execute(&id, create).await.expect("create");
        let deadline = timeout(&id, now);
        deadlines.schedule(&deadline).await.expect("schedule");
        scheduled.push((id, deadline));
    }
    let runner = |owner: &str| {
        DeadlineRunner::new(deadlines.clone())
            .route::<Order, CancelUnpaidOrder>(NAME, orders.clone())
            .with_owner(owner)
            .with_options(DeadlineOptions::default().batch_size(20))
    };
    let delivering = ["one", "two"].map(|owner| {
        let runner = runner(owner);
        tokio::spawn(async move { runner.deliver_due().await.expect("deliver") })
    });
    let mut answers = Vec::new();
    for (id, deadline) in scheduled.iter().rev() {
        answers.push((
            id.clone(),
            deadline.id,
            deadlines.cancel(deadline.id).await.expect("cancel"),
        ));
    }
    for runner in delivering {
        runner.await.expect("join");
    }
    runner("last").deliver_due().await.expect("deliver");

    let (mut won, mut lost) = (0, 0);
    for (id, deadline, answer) in answers {
        let executed = cancellations(&*db.shared(), &id).await;
        let state = deadlines.state(deadline).await.expect("state");
        if answer == Cancellation::Cancelled {
            won += 1;
            assert_eq!(executed, 0, "{id}: cancelled, yet its command ran");
            assert_eq!(state, Some(DeadlineState::Cancelled), "{id}");
        } else {
            lost += 1;
            assert!(
                matches!(
                    answer,
                    Cancellation::Delivering | Cancellation::Delivered { .. }
                ),
                "{id}: {answer:?}"
            );
            assert_eq!(executed, 1, "{id}: {answer:?}, executed {executed} times");
            assert!(
                matches!(state, Some(DeadlineState::Delivered { .. })),
                "{id}: {state:?}"
            );
        }
    }
    assert_eq!(won + lost, 200);
    println!("cancels that won: {won}, that came too late: {lost}");
    db.drop_schema().await;
}
