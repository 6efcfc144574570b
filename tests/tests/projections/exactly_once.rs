//! Exactly-once read models across failures, crashes and competing runners,
//! and inline projections committed with the append.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_applies_every_event_once_and_keeps_its_checkpoint() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 4).await;
    settle(&db, 20).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = runner(&db, &ledger, OnExhausted::Stop);

    let lag = runner.lag().await.expect("lag");
    assert_eq!((lag.checkpoint, lag.events), (Position::START, 20));
    assert!(lag.behind > Duration::ZERO);

    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(runner.catch_up().await.expect("catch up"), 20);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    assert_eq!(ledger.applied(db.pool()).await, 20);

    let last = db
        .store
        .read_log(Position::START, &Default::default(), 100)
        .await
        .expect("log");
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        last[19].position
    );
    assert_eq!(runner.catch_up().await.expect("nothing new"), 0);
    let lag = runner.lag().await.expect("lag");
    assert_eq!((lag.events, lag.behind), (0, Duration::ZERO));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_between_applying_and_committing_applies_nothing_twice() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 3).await;
    settle(&db, 15).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    // The projector writes its rows, then fails before the commit, twice.
    ledger.failures_after_writing.store(2, Ordering::SeqCst);
    let runner = runner(&db, &ledger, OnExhausted::Stop);
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(runner.catch_up().await.expect("catch up"), 15);
    // A second application of any event would have violated the applied key.
    assert_eq!(ledger.applied(db.pool()).await, 15);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_batch_leaves_nothing_half_applied() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 3).await;
    settle(&db, 15).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.slow_amount.store(20, Ordering::SeqCst);

    let first = Arc::new(runner(&db, &ledger, OnExhausted::Stop).with_owner("first"));
    assert!(first.acquire_lease().await.expect("lease"));
    let killed = tokio::spawn({
        let first = first.clone();
        async move { first.catch_up().await }
    });
    // Let it get into its first batch (it pauses on the deposit of 20), then kill it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    killed.abort();
    assert!(killed.await.expect_err("aborted").is_cancelled());
    ledger.slow_amount.store(0, Ordering::SeqCst);

    // Its lease lapses; a successor takes over from the committed checkpoint.
    let second = runner(&db, &ledger, OnExhausted::Stop).with_owner("second");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !second.acquire_lease().await.expect("lease") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.catch_up().await.expect("catch up");
    assert_eq!(ledger.applied(db.pool()).await, 15);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leaseholder_applies_and_a_successor_takes_over_when_it_stops_renewing() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 2).await;
    settle(&db, 10).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let first = runner(&db, &ledger, OnExhausted::Stop).with_owner("first");
    let second = runner(&db, &ledger, OnExhausted::Stop).with_owner("second");

    assert_eq!(second.lease_holder().await.expect("query"), None);
    assert!(first.acquire_lease().await.expect("lease"));
    assert!(!second.acquire_lease().await.expect("lease is taken"));
    // The runner left waiting can tell who holds the lease and until when.
    let holder = second
        .lease_holder()
        .await
        .expect("query")
        .expect("a holder");
    assert_eq!(holder.owner, "first");
    assert!(holder.expires_at > chrono::Utc::now());
    assert!(matches!(
        second.step().await,
        Err(Error::NotLeaseholder { .. })
    ));
    assert_eq!(first.step().await.expect("a batch"), 7);

    // The first runner stops renewing (it hangs, say); the second takes over
    // within the lease time and goes on from the checkpoint.
    let started = tokio::time::Instant::now();
    while !second.acquire_lease().await.expect("lease") {
        assert!(started.elapsed() < Duration::from_secs(10), "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    business(&accounts, "more-", 1).await;
    settle(&db, 15).await;
    assert_eq!(second.catch_up().await.expect("catch up"), 8);
    // The first runner wakes up: its fencing token is stale, it applies nothing.
    assert!(matches!(
        first.step().await,
        Err(Error::NotLeaseholder { .. })
    ));
    assert_eq!(ledger.applied(db.pool()).await, 15);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_while_the_runner_tails_end_in_the_fold_of_every_event() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = Arc::new(runner(&db, &ledger, OnExhausted::Stop));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let accounts = Arc::new(accounts(&db));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let accounts = accounts.clone();
        writers.push(tokio::spawn(async move {
            business(&accounts, &format!("w{writer}-"), 3).await;
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lag = runner.lag().await.expect("lag");
        if lag.events == 0 && ledger.applied(db.pool()).await == 60 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runner still {lag:?} behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await.expect("task").expect("run ends cleanly");
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_lease_was_taken_over_cannot_move_the_checkpoint() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 2).await;
    settle(&db, 10).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let long_lease = options(OnExhausted::Stop).lease_duration(Duration::from_secs(600));
    let first = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .with_options(long_lease.clone())
        .with_owner("first");
    let second = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .with_options(long_lease)
        .with_owner("second");
    assert!(first.acquire_lease().await.expect("lease"));
    assert_eq!(first.step().await.expect("a batch"), 7);

    // The first runner's process freezes past its lease (by the database's
    // clock); the second takes over. The first still believes it holds the lease.
    sqlx::query(&format!(
        "UPDATE {} SET lease_expires_at = now() - interval '1 second'",
        db.table("projections")
    ))
    .execute(db.pool())
    .await
    .expect("expire the lease");
    assert!(second.acquire_lease().await.expect("takeover"));

    // Its next batch is fenced off inside the transaction: nothing applied.
    assert!(matches!(
        first.step().await,
        Err(Error::NotLeaseholder { .. })
    ));
    assert_eq!(ledger.applied(db.pool()).await, 7);
    assert_eq!(second.catch_up().await.expect("catch up"), 3);
    assert_eq!(ledger.applied(db.pool()).await, 10);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_projections_commit_with_the_append_or_not_at_all() {
    use cqrs_examples::bank_account::AccountEvent;
    use cqrskit::{Aggregate, CommandError, StoreError};

    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "inline").await);
    let store = cqrskit::postgres::InlineProjections::<AccountEvent>::new(
        db.store.clone(),
        BankAccount::TYPE,
    )
    .with_projector(ledger.clone());
    let accounts = Accounts::new(Arc::new(store), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    // No runner: the read model was written by the append's own transaction.
    assert_eq!(ledger.balances(db.pool()).await["a"], 10);

    ledger.poison.store(666, Ordering::SeqCst);
    match accounts.execute("a", Deposit { amount: 666 }).await {
        Err(CommandError::Store(StoreError::Projection {
            source: failure,
            checkpoint: None,
        })) => {
            assert_eq!(
                (failure.projector.as_str(), failure.event_type.as_str()),
                ("inline", "DepositMade")
            );
        }
        other => panic!("expected the inline projection to fail the append, got {other:?}"),
    }
    // The events were rolled back with the read model.
    assert_eq!(
        db.store
            .stream_version(&Accounts::stream_id("a"))
            .await
            .expect("version"),
        2
    );
    assert_eq!(ledger.balances(db.pool()).await["a"], 10);
    db.drop_schema().await;
}
