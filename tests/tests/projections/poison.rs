//! Poison events: parked with their error, or stopping the projection; parked
//! again when a rebuild meets them still failing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_with_its_error_and_the_projection_moves_on() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    let poison = accounts
        .execute("a", Deposit { amount: 666 })
        .await
        .expect("deposit");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    settle(&db, 4).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let runner = runner(&db, &ledger, OnExhausted::Park);
    assert!(runner.acquire_lease().await.expect("lease"));

    assert_eq!(runner.catch_up().await.expect("catch up"), 4);
    let parked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id, poison.events[0].event_id);
    assert_eq!((parked[0].version, parked[0].attempts), (3, 3));
    assert!(
        parked[0].error.contains("poison deposit of 666"),
        "{}",
        parked[0].error
    );
    // Everything else was applied; the poison event was not.
    assert_eq!(ledger.balances(db.pool()).await["a"], 15);
    let checkpoint = runner.checkpoint().await.expect("checkpoint");

    // Once the projector is fixed, the parked event replays; the checkpoint stays.
    ledger.poison.store(0, Ordering::SeqCst);
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (1, 0));
    assert!(
        runner
            .dead_letters()
            .await
            .expect("dead letters")
            .is_empty()
    );
    assert_eq!(ledger.balances(db.pool()).await["a"], 681);
    assert_eq!(runner.checkpoint().await.expect("checkpoint"), checkpoint);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_stops_the_projection_which_reports_it() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    let before = accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    let poison = accounts
        .execute("a", Deposit { amount: 666 })
        .await
        .expect("deposit");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    settle(&db, 4).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let runner = runner(&db, &ledger, OnExhausted::Stop);
    assert!(runner.acquire_lease().await.expect("lease"));

    match runner.catch_up().await {
        Err(Error::Stopped {
            at,
            attempts,
            reason,
            ..
        }) => {
            assert_eq!(
                (at.event_id, at.version, attempts),
                (poison.events[0].event_id, 3, 3)
            );
            assert!(reason.contains("poison deposit of 666"), "{reason}");
        }
        other => panic!("expected the projection to stop, got {other:?}"),
    }
    // It stopped right before the poison event, and stays stopped.
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        before.events[0].position
    );
    assert!(matches!(
        runner.step().await,
        Err(Error::StillStopped { .. })
    ));
    assert_eq!(ledger.balances(db.pool()).await["a"], 10);

    ledger.poison.store(0, Ordering::SeqCst);
    runner.resume().await.expect("resume");
    assert_eq!(runner.catch_up().await.expect("catch up"), 2);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    assert!(
        runner
            .dead_letters()
            .await
            .expect("dead letters")
            .is_empty()
    );
    db.drop_schema().await;
}

/// The ledger, failing on the deposit of one amount with whatever reason the
/// test sets: the same event can fail, succeed, then fail again, and each
/// failure is told apart by its reason.
struct Switchable {
    ledger: Ledger,
    amount: u64,
    failure: std::sync::Mutex<Option<String>>,
}

impl Switchable {
    fn fail_with(&self, reason: Option<&str>) {
        *self.failure.lock().expect("not poisoned") = reason.map(str::to_owned);
    }
}

#[cqrskit::async_trait]
impl cqrskit::Projector<sqlx::PgConnection> for Switchable {
    type Event = cqrs_examples::bank_account::AccountEvent;

    fn name(&self) -> &str {
        cqrskit::Projector::name(&self.ledger)
    }

    async fn project(
        &self,
        event: &cqrskit::EventEnvelope<Self::Event>,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), cqrskit::BoxError> {
        use cqrs_examples::bank_account::AccountEvent;
        let targeted = matches!(
            &event.payload,
            AccountEvent::DepositMade(deposit) if deposit.amount == self.amount
        );
        let failure = self.failure.lock().expect("not poisoned").clone();
        match failure {
            Some(reason) if targeted => Err(reason.into()),
            _ => cqrskit::Projector::project(&self.ledger, event, tx).await,
        }
    }

    async fn reset(&self, tx: &mut sqlx::PgConnection) -> Result<(), cqrskit::BoxError> {
        cqrskit::Projector::reset(&self.ledger, tx).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_resolved_after_parking_is_parked_again_when_a_rebuild_meets_it_failing() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    let flaky = accounts
        .execute("a", Deposit { amount: 7 })
        .await
        .expect("deposit");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    settle(&db, 4).await;
    let projector = Arc::new(Switchable {
        ledger: Ledger::create(&db, "ledger").await,
        amount: 7,
        failure: std::sync::Mutex::new(Some("first outage".to_owned())),
    });
    let runner = ProjectionRunner::new(db.store.clone(), projector.clone())
        .with_options(options(OnExhausted::Park));
    assert!(runner.acquire_lease().await.expect("lease"));

    assert_eq!(runner.catch_up().await.expect("catch up"), 4);
    let parked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id, flaky.events[0].event_id);
    projector.fail_with(None);
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (1, 0));
    assert!(
        runner
            .dead_letters()
            .await
            .expect("dead letters")
            .is_empty()
    );

    // The rebuild keeps the resolved dead letter; meeting the event failing
    // again must reopen it rather than trip over its unique key.
    projector.fail_with(Some("second outage"));
    runner.rebuild().await.expect("rebuild");
    assert_eq!(runner.catch_up().await.expect("catch up after rebuild"), 4);
    let reparked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(reparked.len(), 1, "{reparked:?}");
    assert_eq!(
        (reparked[0].id, reparked[0].event_id),
        (parked[0].id, flaky.events[0].event_id)
    );
    assert_eq!(
        (reparked[0].error.as_str(), reparked[0].attempts),
        ("second outage", 3)
    );
    assert_eq!(reparked[0].resolved_at, None);
    assert!(reparked[0].parked_at >= parked[0].parked_at);
    assert_eq!(projector.ledger.balances(db.pool()).await["a"], 15);

    // The reopened dead letter replays like any other.
    projector.fail_with(None);
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (1, 0));
    assert_eq!(
        projector.ledger.balances(db.pool()).await,
        fold(&db.store).await
    );
    db.drop_schema().await;
}

/// With `OnExhausted::ParkStream`, a poison event parks its stream: its
/// later events are parked behind it (its balance stays as it was before
/// the poison, never moving on without it), while every other account's
/// balance stays current. A replay applies the stream's events in order,
/// and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_holds_back_its_stream_and_only_its_stream() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    for id in ["a", "b", "c"] {
        accounts
            .execute(id, OpenAccount { owner: id.into() })
            .await
            .expect("open");
    }
    for (id, amount) in [
        ("a", 10),
        ("b", 1),
        ("a", 666),
        ("c", 2),
        ("a", 5),
        ("b", 3),
        ("a", 7),
        ("c", 4),
    ] {
        accounts
            .execute(id, Deposit { amount })
            .await
            .expect("deposit");
    }
    settle(&db, 11).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let runner = runner(&db, &ledger, OnExhausted::ParkStream);
    assert!(runner.acquire_lease().await.expect("lease"));

    assert_eq!(runner.catch_up().await.expect("catch up"), 11);
    let balances = ledger.balances(db.pool()).await;
    assert_eq!(
        (balances["a"], balances["b"], balances["c"]),
        (10, 4, 6),
        "a stays before its poison deposit; b and c are current"
    );
    let parked = runner.dead_letters().await.expect("dead letters");
    let versions: Vec<u64> = parked.iter().map(|parked| parked.version).collect();
    assert_eq!(
        versions,
        [3, 4, 5],
        "the poison deposit and the two behind it"
    );
    assert!(
        parked[1].error.contains("held behind"),
        "{}",
        parked[1].error
    );

    // Later events of the held stream are held too; others flow.
    accounts
        .execute("a", Deposit { amount: 100 })
        .await
        .expect("deposit");
    accounts
        .execute("b", Deposit { amount: 100 })
        .await
        .expect("deposit");
    settle(&db, 13).await;
    assert_eq!(runner.catch_up().await.expect("catch up"), 2);
    let balances = ledger.balances(db.pool()).await;
    assert_eq!((balances["a"], balances["b"]), (10, 104));

    // Replayed while the poison still fails: nothing of a moves, in order.
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (0, 4));
    assert_eq!(ledger.balances(db.pool()).await["a"], 10);
    // Fixed: the replay applies a's events in order, and a goes on.
    ledger.poison.store(0, Ordering::SeqCst);
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (4, 0));
    assert_eq!(
        ledger.balances(db.pool()).await["a"],
        10 + 666 + 5 + 7 + 100
    );
    accounts
        .execute("a", Deposit { amount: 1 })
        .await
        .expect("deposit");
    settle(&db, 14).await;
    assert_eq!(runner.catch_up().await.expect("catch up"), 1);
    assert_eq!(ledger.balances(db.pool()).await["a"], 789);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}
