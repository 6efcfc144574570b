//! A projection runner meeting what goes wrong in production: a projector
//! that panics, swallows a database error, or is slower than the server's
//! timeouts; a row corrupted behind the store's back; a pool of one
//! connection; events too large to batch by count. Each is one event's
//! failure, handled by the failure policy, never a wedged projection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrs_tests::ledger::Ledger;
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::{
    FailurePolicy, OnExhausted, PostgresEventStore, ProjectionRunner, RunnerOptions,
};
use cqrskit::{Backoff, CommandPipeline, EventStore};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

type Accounts = CommandPipeline<BankAccount>;

fn options(lease: Duration) -> RunnerOptions {
    RunnerOptions::default()
        .lease_duration(lease)
        .poll_interval(Duration::from_millis(100))
        .failure(
            FailurePolicy::default()
                .max_attempts(2)
                .on_exhausted(OnExhausted::Park)
                .backoff(
                    Backoff::default()
                        .initial(Duration::from_millis(1))
                        .max(Duration::from_millis(5)),
                ),
        )
}

/// Account `a`: opened, 10, `bad`, 5. Returns the id of the `bad` deposit.
async fn deposits_around(db: &TestStore, bad: u64) -> uuid::Uuid {
    let accounts = Accounts::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    let bad = accounts
        .execute("a", Deposit { amount: bad })
        .await
        .expect("deposit")
        .events[0]
        .event_id;
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    cqrs_tests::scenarios::settled(&db.shared(), 4).await;
    bad
}

/// Catches up until `events` are processed (the log's horizon may hide the
/// newest for a moment while other tests' transactions run); returns how
/// many were.
async fn process<P>(runner: &ProjectionRunner<P>, events: usize) -> usize
where
    P: cqrskit::Projector<sqlx::PgConnection> + 'static,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut processed = 0;
    while processed < events {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner is wedged"
        );
        processed += runner.catch_up().await.expect("catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    processed
}

/// Runs the ledger over the four events and checks that exactly the bad one
/// was parked, with an error saying `why`, and every other one applied.
async fn parks_only_the_bad_event(
    db: &TestStore,
    store: PostgresEventStore,
    ledger: Arc<Ledger>,
    lease: Duration,
    bad: uuid::Uuid,
    why: &str,
) {
    let runner = ProjectionRunner::new(store, ledger.clone()).with_options(options(lease));
    assert!(runner.acquire_lease().await.expect("lease"));
    let processed = process(&runner, 4).await;
    assert_eq!(processed, 4);
    let parked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, bad);
    assert!(
        parked[0].error.contains(why),
        "`{}` should say `{why}`",
        parked[0].error
    );
    assert_eq!(ledger.balances(db.pool()).await["a"], 15);
    assert_eq!(ledger.applied(db.pool()).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_projector_fails_its_event_and_the_runner_goes_on() {
    let db = TestStore::new().await;
    let bad = deposits_around(&db, 13).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.panic_amount.store(13, Ordering::SeqCst);
    let store = db.store.clone();
    parks_only_the_bad_event(&db, store, ledger, Duration::from_secs(10), bad, "panicked").await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_the_projector_swallowed_is_its_events_failure() {
    let db = TestStore::new().await;
    let bad = deposits_around(&db, 13).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.swallow_amount.store(13, Ordering::SeqCst);
    let store = db.store.clone();
    parks_only_the_bad_event(&db, store, ledger, Duration::from_secs(10), bad, "aborted").await;
    db.drop_schema().await;
}

/// What `docs/postgres.md` recommends operators set, shorter than one event
/// takes: the server ends the runner's session mid-batch. The events before
/// the slow one are committed, the slow one goes through the policy, and
/// the ones after it are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_slower_than_the_servers_idle_timeout_fails_only_that_event() {
    let db = TestStore::new().await;
    let bad = deposits_around(&db, 13).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.slow_amount.store(13, Ordering::SeqCst);
    ledger.slow_millis.store(900, Ordering::SeqCst);
    let url: PgConnectOptions = cqrs_tests::postgres::database_url().parse().expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(url.options([("idle_in_transaction_session_timeout", "400")]))
        .await
        .expect("connect");
    let store = PostgresEventStore::from_pool(pool)
        .with_schema(&db.schema)
        .expect("schema");
    parks_only_the_bad_event(
        &db,
        store,
        ledger,
        Duration::from_secs(30),
        bad,
        "idle-in-transaction timeout",
    )
    .await;
    db.drop_schema().await;
}

/// The runner's own bound: a projector stuck longer than a third of the
/// lease has its transaction ended by the server, so it cannot hold the
/// projection (and the log's horizon) past its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_stuck_past_a_third_of_the_lease_fails_only_that_event() {
    let db = TestStore::new().await;
    let bad = deposits_around(&db, 13).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.slow_amount.store(13, Ordering::SeqCst);
    ledger.slow_millis.store(900, Ordering::SeqCst);
    let store = db.store.clone();
    parks_only_the_bad_event(
        &db,
        store,
        ledger,
        Duration::from_millis(1500),
        bad,
        "idle-in-transaction timeout",
    )
    .await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_row_is_parked_and_the_events_around_it_are_applied() {
    let db = TestStore::new().await;
    let accounts = Accounts::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    // A row written behind the store's back, with metadata of the wrong shape.
    // language=SQL
    let bad: uuid::Uuid = sqlx::query_scalar(&format!(
        "INSERT INTO {} (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata)
         VALUES (gen_random_uuid(), 'account', 'a', 3, 'DepositMade', 1, '{{\"amount\": 7}}', '{{\"entries\": [1, 2]}}')
         RETURNING event_id",
        db.table("events")
    ))
    .fetch_one(db.pool())
    .await
    .expect("insert a corrupted row");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let store = db.store.clone();
    parks_only_the_bad_event(&db, store, ledger, Duration::from_secs(10), bad, "metadata").await;
    db.drop_schema().await;
}

/// With a pool of one connection the runner still makes progress: its
/// listener has a connection of its own, and replaying a dead letter reads
/// the event on the transaction's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_works_on_a_pool_of_one_connection() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(13, Ordering::SeqCst);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&cqrs_tests::postgres::database_url())
        .await
        .expect("connect");
    let store = PostgresEventStore::from_pool(pool)
        .with_schema(&db.schema)
        .expect("schema");
    let runner = Arc::new(
        ProjectionRunner::new(store, ledger.clone()).with_options(options(Duration::from_secs(10))),
    );
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
    deposits_around(&db, 13).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger.applied(db.pool()).await < 3
        || runner.dead_letters().await.expect("list").is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress on a pool of one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.expect("task").expect("run ends cleanly");

    ledger.poison.store(0, Ordering::SeqCst);
    let replayed = runner.replay_dead_letters().await.expect("replay");
    assert_eq!((replayed.resolved, replayed.still_failing), (1, 0));
    assert_eq!(ledger.balances(db.pool()).await["a"], 28);
    db.drop_schema().await;
}

/// Batches are cut by payload bytes too: a step takes fewer events than the
/// batch size when their payloads pass `batch_bytes`, and the projection
/// still gets all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_by_bytes() {
    let db = TestStore::new().await;
    let accounts = Accounts::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    for amount in 100..120 {
        accounts
            .execute("a", Deposit { amount })
            .await
            .expect("deposit");
    }
    cqrs_tests::scenarios::settled(&db.shared(), 21).await;
    let payload_bytes = db
        .store
        .read_stream(&Accounts::stream_id("a"), 2, 1)
        .await
        .expect("read")[0]
        .payload
        .get()
        .len();
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(
        options(Duration::from_secs(10))
            .batch_size(100)
            .batch_bytes(payload_bytes * 5),
    );
    assert!(runner.acquire_lease().await.expect("lease"));
    let first = runner.step().await.expect("a batch");
    assert!(
        (1..=6).contains(&first),
        "a batch of {first} events of ~{payload_bytes} bytes"
    );
    assert_eq!(first + runner.catch_up().await.expect("catch up"), 21);
    assert_eq!(ledger.applied(db.pool()).await, 21);
    db.drop_schema().await;
}

/// A read model with a constraint checked at COMMIT (deferred): each deposit
/// amount may appear once.
struct DistinctAmounts {
    table: String,
}

#[cqrskit::async_trait]
impl cqrskit::Projector<sqlx::PgConnection> for DistinctAmounts {
    type Event = cqrs_examples::bank_account::AccountEvent;

    fn name(&self) -> &str {
        "distinct_amounts"
    }

    async fn project(
        &self,
        event: &cqrskit::EventEnvelope<Self::Event>,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), cqrskit::BoxError> {
        if let cqrs_examples::bank_account::AccountEvent::DepositMade(deposit) = &event.payload {
            sqlx::query(&format!("INSERT INTO {} (amount) VALUES ($1)", self.table))
                .bind(i64::try_from(deposit.amount)?)
                .execute(tx)
                .await?;
        }
        Ok(())
    }
}

/// A COMMIT the server refuses (a deferred constraint) is the failure of the
/// event behind it: that event is parked, the others applied, instead of
/// the batch being retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_by_a_deferred_constraint_parks_the_event_behind_it() {
    let db = TestStore::new().await;
    let table = db.table("distinct_amounts");
    // language=SQL
    sqlx::query(&format!(
        "CREATE TABLE {table} (amount bigint UNIQUE DEFERRABLE INITIALLY DEFERRED)"
    ))
    .execute(db.pool())
    .await
    .expect("create the read model");
    let accounts = Accounts::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    let mut ids = Vec::new();
    for amount in [1, 2, 2, 3] {
        ids.push(
            accounts
                .execute("a", Deposit { amount })
                .await
                .expect("deposit")
                .events[0]
                .event_id,
        );
    }
    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(DistinctAmounts {
            table: table.clone(),
        }),
    )
    .with_options(options(Duration::from_secs(10)));
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(process(&runner, 5).await, 5);
    let parked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, ids[2]);
    assert!(
        parked[0].error.contains("commit was refused"),
        "{}",
        parked[0].error
    );
    let amounts: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT amount FROM {table} ORDER BY amount"))
            .fetch_all(db.pool())
            .await
            .expect("read the read model");
    assert_eq!(amounts, [1, 2, 3]);
    db.drop_schema().await;
}

/// A projector that ends the runner's transaction itself (its own
/// `ROLLBACK`) fails its event: what it rolled back is applied again, and
/// the event goes through the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_ending_the_runners_transaction_fails_its_event() {
    let db = TestStore::new().await;
    let accounts = Accounts::new(db.shared(), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    accounts
        .execute("a", Deposit { amount: 10 })
        .await
        .expect("deposit");
    let bad = accounts
        .execute("a", Deposit { amount: 13 })
        .await
        .expect("deposit")
        .events[0]
        .event_id;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.rollback_amount.store(13, Ordering::SeqCst);
    let runner = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .with_options(options(Duration::from_secs(10)));
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(process(&runner, 3).await, 3);
    let parked = runner.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, bad);
    assert!(
        parked[0].error.contains("ended the runner's transaction"),
        "{}",
        parked[0].error
    );
    assert_eq!(ledger.balances(db.pool()).await["a"], 10);
    assert_eq!(ledger.applied(db.pool()).await, 2);
    db.drop_schema().await;
}
