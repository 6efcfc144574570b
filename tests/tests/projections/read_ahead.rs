//! Reading the next batches while one is applied.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_ahead_is_not_used_once_another_runner_moved_the_checkpoint() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 6).await;
    settle(&db, 30).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let first = runner(&db, &ledger, OnExhausted::Stop).with_owner("first");
    let second = runner(&db, &ledger, OnExhausted::Stop).with_owner("second");

    // The first runner applies events 1-7 and reads 8-14 and 15-21 ahead.
    assert!(first.acquire_lease().await.expect("lease"));
    assert_eq!(first.step().await.expect("a batch"), 7);
    first.release_lease().await.expect("release");
    // The second applies 8-14 (and reads 15-21 ahead), then lets go.
    assert!(second.acquire_lease().await.expect("lease"));
    assert_eq!(second.step().await.expect("a batch"), 7);
    second.release_lease().await.expect("release");
    // Back with the first: what it read ahead (8-21) is not what follows the
    // checkpoint now; applying 8-14 again would break exactly-once.
    assert!(first.acquire_lease().await.expect("lease"));
    assert_eq!(first.catch_up().await.expect("catch up"), 16);
    assert_eq!(ledger.applied(db.pool()).await, 30);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_ahead_never_waits_for_a_connection_the_step_itself_holds() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 3).await;
    accounts
        .execute("acc-0", Deposit { amount: 666 })
        .await
        .expect("deposit");
    settle(&db, 16).await;
    // A store whose pool has a single connection, slow to give up waiting:
    // a step that waited for a second connection would hang for a minute.
    let single = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&cqrs_tests::postgres::database_url())
        .await
        .expect("connect");
    let store = cqrskit::postgres::PostgresEventStore::from_pool(single)
        .with_schema(&db.schema)
        .expect("schema");
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let runner =
        ProjectionRunner::new(store, ledger.clone()).with_options(options(OnExhausted::Park));
    assert!(runner.acquire_lease().await.expect("lease"));
    let processed = tokio::time::timeout(Duration::from_secs(10), runner.catch_up())
        .await
        .expect("catch-up does not wait on its own connection")
        .expect("catch up");
    assert_eq!(processed, 16);
    assert_eq!(runner.dead_letters().await.expect("dead letters").len(), 1);
    assert_eq!(ledger.applied(db.pool()).await, 15);
    db.drop_schema().await;
}

/// The ledger, recording what the runner hands to `look_ahead`.
struct LookingAhead {
    ledger: Ledger,
    seen: std::sync::Mutex<Vec<(Position, Vec<uuid::Uuid>)>>,
}

#[cqrskit::async_trait]
impl cqrskit::Projector<sqlx::PgConnection> for LookingAhead {
    type Event = cqrs_examples::bank_account::AccountEvent;

    fn name(&self) -> &str {
        cqrskit::Projector::name(&self.ledger)
    }

    async fn project(
        &self,
        event: &cqrskit::EventEnvelope<Self::Event>,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), cqrskit::BoxError> {
        cqrskit::Projector::project(&self.ledger, event, tx).await
    }

    async fn look_ahead(&self, after: Position, events: &[cqrskit::EventEnvelope<Self::Event>]) {
        let ids = events.iter().map(|event| event.event_id).collect();
        self.seen.lock().expect("not poisoned").push((after, ids));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_hands_the_batches_it_read_ahead_to_the_projector_early() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 6).await;
    settle(&db, 30).await;
    let projector = Arc::new(LookingAhead {
        ledger: Ledger::create(&db, "ledger").await,
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let runner = ProjectionRunner::new(db.store.clone(), projector.clone())
        .with_options(options(OnExhausted::Stop));
    assert!(runner.acquire_lease().await.expect("lease"));

    // After the first batch (events 1-7), the next ones were handed over
    // before any step applied them.
    assert_eq!(runner.step().await.expect("a batch"), 7);
    let log = db
        .store
        .read_log(Position::START, &Default::default(), 100)
        .await
        .expect("log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let early = loop {
        let seen = projector.seen.lock().expect("not poisoned").clone();
        if let Some(early) = seen
            .into_iter()
            .find(|(after, _)| *after == log[6].position)
        {
            break early;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no look-ahead after the first batch"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let next: Vec<_> = log[7..14].iter().map(|event| event.event_id).collect();
    assert_eq!(early.1, next, "the batch after the first, in log order");

    // Every hand-over is a run of the log right after its position; and
    // looking ahead applies nothing.
    assert_eq!(runner.catch_up().await.expect("catch up"), 23);
    for (after, ids) in projector.seen.lock().expect("not poisoned").iter() {
        let start = log
            .iter()
            .position(|event| event.position > *after)
            .expect("events after");
        let run: Vec<_> = log[start..start + ids.len()]
            .iter()
            .map(|event| event.event_id)
            .collect();
        assert_eq!(ids, &run);
    }
    assert_eq!(projector.ledger.applied(db.pool()).await, 30);
    assert_eq!(
        projector.ledger.balances(db.pool()).await,
        fold(&db.store).await
    );
    db.drop_schema().await;
}
