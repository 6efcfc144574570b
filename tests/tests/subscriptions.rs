//! A projection remembers the event types it subscribes to: a projector of
//! another version never moves its checkpoint silently past events it
//! should have seen (the rolling-deploy data loss), and says what to do.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::ledger::{Ledger, fold};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::CommandPipeline;
use cqrskit::postgres::{Error, ProjectionRunner, RunnerOptions};

type Accounts = CommandPipeline<BankAccount>;

const WITHOUT_WITHDRAWALS: &[&str] = &["AccountOpened", "DepositMade"];

async fn ledger(db: &TestStore, types: &'static [&'static str]) -> Arc<Ledger> {
    let mut ledger = Ledger::open(&db.schema, "ledger");
    ledger.types = types;
    Arc::new(ledger)
}

fn runner(db: &TestStore, ledger: Arc<Ledger>) -> ProjectionRunner<Ledger> {
    ProjectionRunner::new(db.store.clone(), ledger).with_options(
        RunnerOptions::default()
            .lease_duration(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(50)),
    )
}

/// Catches up until `events` of the log are processed (the log's horizon
/// may hide the newest for a moment).
async fn catch_up(runner: &ProjectionRunner<Ledger>, events: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut processed = 0;
    while processed < events {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processed {processed} of {events}"
        );
        processed += runner.catch_up().await.expect("catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn open_and_deposit(accounts: &Accounts, id: &str) {
    accounts
        .execute(id, OpenAccount { owner: id.into() })
        .await
        .expect("open");
    accounts
        .execute(id, Deposit { amount: 100 })
        .await
        .expect("deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_projector_version_refuses_a_checkpoint_that_passed_its_new_types() {
    let db = TestStore::new().await;
    Ledger::create(&db, "ledger").await;
    let accounts = Accounts::new(db.shared(), ());
    open_and_deposit(&accounts, "a").await;
    accounts
        .execute("a", Withdraw { amount: 30 })
        .await
        .expect("withdraw");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");

    // Version 1 knows no withdrawals: its checkpoint passes the withdrawal
    // on its way to the deposit after it.
    let old = runner(&db, ledger(&db, WITHOUT_WITHDRAWALS).await);
    assert!(old.acquire_lease().await.expect("lease"));
    catch_up(&old, 3).await;
    old.release_lease().await.expect("release");

    // Version 2 handles them; under the same name it must not go on.
    let new_ledger = ledger(&db, cqrs_tests::ledger::ALL_TYPES).await;
    let new = runner(&db, new_ledger.clone());
    assert!(new.acquire_lease().await.expect("lease"));
    match new.step().await {
        Err(Error::SubscriptionChanged {
            projection,
            added,
            removed,
        }) => {
            assert_eq!(projection, "ledger");
            assert_eq!(added, ["WithdrawalMade"]);
            assert!(removed.is_empty());
        }
        other => panic!("the new version must refuse to apply, got {other:?}"),
    }
    let error = new.step().await.expect_err("still refused").to_string();
    assert!(
        error.contains("rebuild") && error.contains("new name"),
        "{error}"
    );
    assert!(new.lag().await.expect("lag").needs_rebuild);
    assert_eq!(
        new_ledger.balances(db.pool()).await["a"],
        105,
        "nothing moved"
    );

    // The way out: a rebuild replays the log for the new types.
    new.rebuild().await.expect("rebuild");
    catch_up(&new, 4).await;
    assert!(!new.lag().await.expect("lag").needs_rebuild);
    assert_eq!(new_ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_type_with_no_earlier_events_is_recorded_and_an_old_version_coming_back_is_refused() {
    let db = TestStore::new().await;
    Ledger::create(&db, "ledger").await;
    let accounts = Accounts::new(db.shared(), ());
    open_and_deposit(&accounts, "a").await;

    let old = runner(&db, ledger(&db, WITHOUT_WITHDRAWALS).await);
    assert!(old.acquire_lease().await.expect("lease"));
    catch_up(&old, 2).await;
    old.release_lease().await.expect("release");

    // No withdrawal was skipped: version 2 takes over without a rebuild.
    let new_ledger = ledger(&db, cqrs_tests::ledger::ALL_TYPES).await;
    let new = runner(&db, new_ledger.clone());
    assert!(new.acquire_lease().await.expect("lease"));
    accounts
        .execute("a", Withdraw { amount: 30 })
        .await
        .expect("withdraw");
    catch_up(&new, 1).await;
    assert_eq!(new_ledger.balances(db.pool()).await["a"], 70);
    new.release_lease().await.expect("release");

    // Version 1 coming back (a rollback, a stale instance) would skip
    // withdrawals: refused, naming the removed type.
    assert!(old.acquire_lease().await.expect("lease"));
    match old.step().await {
        Err(Error::SubscriptionChanged { added, removed, .. }) => {
            assert!(added.is_empty());
            assert_eq!(removed, ["WithdrawalMade"]);
        }
        other => panic!("the old version must refuse to apply, got {other:?}"),
    }
    // A deliberate removal is accepted explicitly.
    old.accept_subscription().await.expect("accept");
    assert_eq!(old.step().await.expect("a step"), 0);
    db.drop_schema().await;
}

/// The rolling deploy with real processes: an old runner holds the lease
/// while a new version of the application writes the new event type; the
/// old runner's checkpoint passes those events; the new runner, taking over
/// after the old process dies, refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_never_loses_events_for_a_projection() {
    let db = TestStore::new().await;
    let ledger = Ledger::create(&db, "ledger").await;
    let accounts = Accounts::new(db.shared(), ());
    open_and_deposit(&accounts, "a").await;

    let spawn = |owner: &str, types: &str| {
        Command::new(env!("CARGO_BIN_EXE_projection_runner"))
            .env("DATABASE_URL", database_url())
            .env("SCHEMA", &db.schema)
            .env("OWNER", owner)
            .env("LEASE_MS", "1500")
            .env("SLOW_AMOUNT", "0")
            .env("SLOW_MS", "0")
            .env("TYPES", types)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a runner process")
    };
    let mut old = spawn("old-version", "without-withdrawals");
    // The new version of the application already writes withdrawals.
    accounts
        .execute("a", Withdraw { amount: 30 })
        .await
        .expect("withdraw");
    accounts
        .execute("a", Deposit { amount: 5 })
        .await
        .expect("deposit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger.balances(db.pool()).await.get("a") != Some(&105) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old runner never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old.kill().expect("kill -9 the old runner");
    old.wait().expect("reap");

    let mut new = spawn("new-version", "all");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while new.try_wait().expect("poll the new runner").is_none() {
        if tokio::time::Instant::now() > deadline {
            let _ = new.kill();
            panic!("the new runner kept running over a checkpoint that skipped withdrawals");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = new.wait_with_output().expect("the new runner's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("projection `ledger`") && stderr.contains("WithdrawalMade"),
        "{stderr}"
    );
    assert_eq!(
        ledger.balances(db.pool()).await["a"],
        105,
        "nothing applied by a runner that would skip the withdrawal"
    );
    db.drop_schema().await;
}
