//! Rebuilds: from zero, and a new version beside the live one.

use super::*;

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
