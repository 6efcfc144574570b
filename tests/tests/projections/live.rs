//! Live tailing: woken by NOTIFY, the lag it reports, and callers waiting to
//! read their own writes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_reaches_the_read_model_through_notify_without_waiting_for_a_poll() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    settle(&db, 1).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let slow_polls = options(OnExhausted::Stop)
        .poll_interval(Duration::from_secs(120))
        .lease_duration(Duration::from_secs(600));
    let runner =
        Arc::new(ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(slow_polls));
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
    // The runner listens before its first catch-up: once the opening is
    // applied, it is listening.
    wait_for_balance(&db, &ledger, Some(0)).await;

    accounts
        .execute("a", Deposit { amount: 42 })
        .await
        .expect("deposit");
    let started = tokio::time::Instant::now();
    wait_for_balance(&db, &ledger, Some(42)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let _ = stop.send(());
    running.await.expect("task").expect("run ends cleanly");
    db.drop_schema().await;
}

/// Waits (up to 10 s, far below the 120 s poll interval) for account `a`'s balance.
async fn wait_for_balance(db: &TestStore, ledger: &Ledger, expected: Option<i64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if ledger.balances(db.pool()).await.get("a").copied() == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "balance never became {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_names_the_append_that_holds_events_back() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = runner(&db, &ledger, OnExhausted::Stop);
    let mut open = db.pool().begin().await.expect("begin");
    db.store
        .append_in(
            &mut open,
            &cqrs_tests::fixtures::stream("slow"),
            cqrskit::ExpectedVersion::NoStream,
            cqrs_tests::fixtures::ticks(1),
        )
        .await
        .expect("an append left open");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *open)
        .await
        .expect("its session");
    business(&accounts(&db), "acc-", 1).await;

    let lag = runner.lag().await.expect("lag");
    assert_eq!(lag.events, 5);
    let holder = lag.held_back_by.expect("the open append is named");
    assert_eq!(holder.pid, pid);
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(
        runner.catch_up().await.expect("catch up"),
        0,
        "read past an open append"
    );

    open.commit().await.expect("commit");
    assert_eq!(cqrskit::postgres::testing::caught_up(&runner).await, 5);
    let lag = runner.lag().await.expect("lag");
    assert_eq!((lag.events, lag.held_back_by), (0, None));
    db.drop_schema().await;
}

/// Read-your-writes: a caller waits until the projection has applied its
/// command's events, then reads them; without a runner the wait ends at
/// its bound with `false`; a position the projection never reads (a type
/// it does not handle) needs no wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waits_for_the_projection_to_apply_its_command_then_reads_it() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 2).await;
    let mut ledger = Ledger::create(&db, "ledger").await;
    // The ledger of an older version, without withdrawals.
    ledger.types = &["AccountOpened", "DepositMade"];
    let ledger = Arc::new(ledger);
    let runner = Arc::new(runner(&db, &ledger, OnExhausted::Stop));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let deposit = accounts
        .execute("acc-0", Deposit { amount: 1234 })
        .await
        .expect("deposit");
    let written = deposit.events.last().expect("an event").position;
    assert!(
        runner
            .wait_for(written, Duration::from_secs(10))
            .await
            .expect("wait"),
        "the projection applied the deposit within the bound"
    );
    let balances = ledger.balances(db.pool()).await;
    assert_eq!(
        balances["acc-0"],
        100 + 20 + 3 + 1234,
        "the caller reads its own write"
    );

    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");
    let unseen = accounts
        .execute("acc-1", Deposit { amount: 1 })
        .await
        .expect("deposit");
    let started = std::time::Instant::now();
    assert!(
        !runner
            .wait_for(unseen.events[0].position, Duration::from_millis(300))
            .await
            .expect("wait"),
        "no runner applies it"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let ignored = accounts
        .execute("acc-1", Withdraw { amount: 1 })
        .await
        .expect("withdraw");
    // Behind the unseen deposit, the withdrawal's position still waits for it...
    assert!(
        !runner
            .wait_for(ignored.events[0].position, Duration::from_millis(50))
            .await
            .expect("wait")
    );
    // ...and once the deposit is applied, a withdrawal it never reads needs no wait.
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    assert!(
        runner
            .wait_for(ignored.events[0].position, Duration::ZERO)
            .await
            .expect("wait")
    );
    db.drop_schema().await;
}
