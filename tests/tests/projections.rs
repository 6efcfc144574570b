//! The projection runner against PostgreSQL: exactly-once read models across
//! failures, crashes and competing runners; parking and stopping at poison
//! events; rebuilds; live tailing woken by NOTIFY.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::ledger::{Ledger, business, fold};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::{
    DaemonError, FailurePolicy, OnExhausted, ProjectionDaemon, ProjectionRunner, RunnerError,
    RunnerOptions,
};
use cqrskit::{CommandPipeline, EventStore, Position};

type Accounts = CommandPipeline<BankAccount>;

fn accounts(db: &TestStore) -> Accounts {
    Accounts::new(db.shared(), ())
}

fn options(failure: OnExhausted) -> RunnerOptions {
    RunnerOptions {
        batch_size: 7,
        lease_duration: Duration::from_secs(2),
        poll_interval: Duration::from_millis(100),
        failure: FailurePolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            on_exhausted: failure,
        },
        ..RunnerOptions::default()
    }
}

fn runner(db: &TestStore, ledger: &Arc<Ledger>, failure: OnExhausted) -> ProjectionRunner<Ledger> {
    ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(options(failure))
}

/// Waits until the log shows every event written so far to readers.
async fn settle(db: &TestStore, events: usize) {
    cqrs_tests::scenarios::settled(&db.shared(), events).await;
}

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
        Err(RunnerError::NotLeaseholder { .. })
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
        Err(RunnerError::NotLeaseholder { .. })
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
        Err(RunnerError::Stopped {
            event_id,
            version,
            attempts,
            reason,
            ..
        }) => {
            assert_eq!(
                (event_id, version, attempts),
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
        Err(RunnerError::StillStopped { .. })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_zero_and_a_new_version_beside_it_match_the_live_read_model() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 3).await;
    settle(&db, 15).await;
    let live = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = runner(&db, &live, OnExhausted::Stop);
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    let live_balances = live.balances(db.pool()).await;

    runner.rebuild().await.expect("rebuild");
    assert!(
        live.balances(db.pool()).await.is_empty(),
        "reset cleared the read model"
    );
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        Position::START
    );
    assert_eq!(runner.catch_up().await.expect("replay"), 15);
    assert_eq!(live.balances(db.pool()).await, live_balances);
    assert_eq!(live.applied(db.pool()).await, 15);

    // Blue/green: version 2 under another name and tables, built beside the live one.
    let green = Arc::new(Ledger::create(&db, "ledger_v2").await);
    let green_runner = ProjectionRunner::new(db.store.clone(), green.clone())
        .with_options(options(OnExhausted::Stop));
    assert!(green_runner.acquire_lease().await.expect("its own lease"));
    green_runner.catch_up().await.expect("catch up");
    assert_eq!(green_runner.lag().await.expect("lag").events, 0);
    assert_eq!(green.balances(db.pool()).await, live_balances);
    db.drop_schema().await;
}

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
    let mut slow_polls = options(OnExhausted::Stop);
    slow_polls.poll_interval = Duration::from_secs(120);
    slow_polls.lease_duration = Duration::from_secs(600);
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
async fn a_runner_whose_lease_was_taken_over_cannot_move_the_checkpoint() {
    let db = TestStore::new().await;
    business(&accounts(&db), "acc-", 2).await;
    settle(&db, 10).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let mut long_lease = options(OnExhausted::Stop);
    long_lease.lease_duration = Duration::from_secs(600);
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
        Err(RunnerError::NotLeaseholder { .. })
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
        Err(CommandError::Store(StoreError::InlineProjection(failure))) => {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_examples_balance_table_follows_the_log_and_rebuilds() {
    use cqrs_examples::bank_account::balances::AccountBalances;

    let db = TestStore::new().await;
    let accounts = accounts(&db);
    accounts
        .execute(
            "acc",
            OpenAccount {
                owner: "Alice".into(),
            },
        )
        .await
        .expect("open");
    accounts
        .execute("acc", Deposit { amount: 100 })
        .await
        .expect("deposit");
    accounts
        .execute("acc", Withdraw { amount: 50 })
        .await
        .expect("withdraw");
    accounts
        .execute("acc", Deposit { amount: 25 })
        .await
        .expect("deposit");
    settle(&db, 4).await;

    // The example's projector is written with #[projector] and takes the
    // runner's transaction as its context.
    // Nobody creates its table: the runner runs the projector's #[setup]
    // hook before its first batch.
    let balances = Arc::new(AccountBalances::new(&db.store));
    let runner = ProjectionRunner::new(db.store.clone(), balances.clone());
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(runner.catch_up().await.expect("catch up"), 4);
    let row = balances
        .get(db.pool(), "acc")
        .await
        .expect("query")
        .expect("row");
    assert_eq!(
        (row.owner.as_str(), row.balance, row.version),
        ("Alice", 75, 4)
    );

    // A rebuild sets up again first: even a dropped table comes back.
    sqlx::query(&format!("DROP TABLE {}", db.table("account_balances")))
        .execute(db.pool())
        .await
        .expect("drop the read model's table");
    runner.rebuild().await.expect("rebuild");
    assert!(
        balances
            .get(db.pool(), "acc")
            .await
            .expect("query")
            .is_none()
    );
    runner.catch_up().await.expect("replay");
    assert_eq!(
        balances
            .get(db.pool(), "acc")
            .await
            .expect("query")
            .expect("row")
            .balance,
        75
    );
    db.drop_schema().await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_runs_several_projections_with_one_shutdown_and_releases_every_lease() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 3).await;
    let ledgers = [
        Arc::new(Ledger::create(&db, "ledger_a").await),
        Arc::new(Ledger::create(&db, "ledger_b").await),
    ];
    let daemon = Arc::new(
        ProjectionDaemon::new()
            .with(runner(&db, &ledgers[0], OnExhausted::Stop))
            .with(runner(&db, &ledgers[1], OnExhausted::Stop)),
    );
    assert_eq!(daemon.projections(), ["ledger_a", "ledger_b"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            daemon
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    // Both follow live appends; the status view shows them caught up and
    // holding their leases.
    business(&accounts, "more-", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = daemon.status().await;
        let caught_up = status.iter().all(|projection| {
            matches!(&projection.lag, Ok(lag) if lag.events == 0 && lag.checkpoint != Position::START)
                && matches!(&projection.holder, Ok(Some(_)))
        });
        if caught_up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not caught up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for ledger in &ledgers {
        assert_eq!(ledger.applied(db.pool()).await, 25);
        assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    }

    let _ = stop.send(());
    running.await.expect("daemon task").expect("a clean stop");
    // One shutdown released every lease: the next start need not wait.
    for ledger in &ledgers {
        let next = runner(&db, ledger, OnExhausted::Stop);
        assert_eq!(next.lease_holder().await.expect("query"), None);
        assert!(next.acquire_lease().await.expect("lease"));
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_to_run_one_projection_twice() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let daemon = ProjectionDaemon::new()
        .with(runner(&db, &ledger, OnExhausted::Stop))
        .with(runner(&db, &ledger, OnExhausted::Stop));
    match daemon.run(std::future::ready(())).await {
        Err(DaemonError::DuplicateProjection(name)) => assert_eq!(name, "ledger"),
        other => panic!("expected a duplicate-projection error, got {other:?}"),
    }
    db.drop_schema().await;
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
