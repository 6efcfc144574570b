//! A command whose answer is lost after its events were stored.
//!
//! The regression: with the server's reply to the append lost after the
//! commit, `execute(Withdraw 60)` returned `Err(Store(Unavailable))`, which
//! says "nothing is known to have been written; retrying is reasonable". The
//! withdrawal was stored, the client retried, and the balance was debited
//! twice.
//!
//! These tests put a real TCP proxy ([`FaultProxy`]) between sqlx and the real
//! PostgreSQL and lose the reply to the append's `INSERT` after the database
//! committed it. Every check of what is stored reads through a direct
//! connection, not through the proxy.

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::{
    AccountEvent, BankAccount, Deposit, OpenAccount, Withdraw, WithdrawalMade,
};
use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::postgres::{HeldAppend, TestStore};
use cqrs_tests::proxy::{FaultProxy, Mode};
use cqrskit::postgres::{GroupCommit, PostgresEventStore, StoreOptions};
use cqrskit::{
    CommandError, CommandOutcome, CommandPipeline, EventStore, ExpectedVersion, Metadata,
    PipelineOptions, StoreError,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

type Accounts = CommandPipeline<BankAccount>;

/// What the proxy watches for: every append statement inserts into the
/// events table. The proxy matches it on the statement's SQL text, so it
/// fires whether the statement is prepared right then or was prepared on the
/// connection before (then only `Bind`/`Execute` are sent).
const APPEND: &[u8] = b"INSERT INTO";

/// A store in `schema` whose connections all go through `proxy`: a small
/// pool that opens no connection before it is used, and gives up on one
/// after 2 s, so a refused connection fails the operation fast.
fn proxied_store(proxy: &FaultProxy, schema: &str) -> PostgresEventStore {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&proxy.database_url())
        .expect("the proxy's URL is valid");
    PostgresEventStore::from_pool(pool)
        .with_schema(schema)
        .expect("the test schema name is valid")
}

/// A migrated schema (through a direct connection), a proxy, and a store in
/// that schema through the proxy.
async fn setup() -> (TestStore, FaultProxy, PostgresEventStore) {
    let db = TestStore::new().await;
    let proxy = FaultProxy::to_test_database().await;
    let store = proxied_store(&proxy, &db.schema);
    (db, proxy, store)
}

/// Opens account `acc` and pays 100 in.
async fn open_with_100(accounts: &Accounts) {
    accounts
        .execute(
            "acc",
            OpenAccount {
                owner: "Alice".into(),
            },
        )
        .await
        .expect("open the account");
    accounts
        .execute("acc", Deposit { amount: 100 })
        .await
        .expect("deposit 100");
}

/// The event types stored in account `acc`'s stream, read directly.
async fn stored_types(db: &TestStore) -> Vec<String> {
    db.store
        .read_stream(&Accounts::stream_id("acc"), 1, 100)
        .await
        .expect("read the stream directly")
        .into_iter()
        .map(|event| event.event_type)
        .collect()
}

fn withdrawals(types: &[String]) -> usize {
    types
        .iter()
        .filter(|kind| *kind == "WithdrawalMade")
        .count()
}

/// The outcome holds exactly the withdrawal of 60, at version 3.
fn assert_withdrew_60(outcome: &CommandOutcome<AccountEvent>) {
    let payloads: Vec<_> = outcome.events.iter().map(|event| &event.payload).collect();
    assert_eq!(
        payloads,
        [&AccountEvent::WithdrawalMade(WithdrawalMade { amount: 60 })]
    );
    assert_eq!(outcome.version, 3);
}

/// The balance and version as the pipeline loads them, through the proxy.
async fn balance(accounts: &Accounts) -> (u64, u64) {
    let loaded = accounts.load("acc").await.expect("load the account");
    (loaded.state.balance, loaded.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_after_commit_is_reported_as_unknown_and_the_retry_applies_once() {
    let (db, proxy, store) = setup().await;
    let accounts = Accounts::new(Arc::new(store), ());
    open_with_100(&accounts).await;

    // The reply to the withdrawal's insert is lost after the commit, and the
    // database is unreachable right after: the store's own resends of the
    // append cannot find out what happened.
    proxy.drop_reply_after(APPEND, Mode::Down);
    let command_id = Uuid::now_v7();
    let lost = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await;
    match &lost {
        Err(CommandError::OutcomeUnknown {
            command_id: reported,
            source,
        }) => {
            assert_eq!(*reported, command_id, "the error names the command");
            assert!(source.is_outcome_unknown(), "{source:?}");
        }
        other => panic!(
            "a lost answer must be reported as OutcomeUnknown (the withdrawal may be stored), \
             never as a failure that stored nothing; got {other:?}"
        ),
    }
    assert_eq!(proxy.fired(), 1, "the proxy lost exactly one answer");
    assert_eq!(
        stored_types(&db).await,
        ["AccountOpened", "DepositMade", "WithdrawalMade"],
        "the withdrawal was committed although its answer was lost"
    );

    // The database is back; the client retries the same command.
    proxy.set_mode(Mode::Pass);
    let retried = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await
        .expect("the retry with the same command id succeeds");
    assert!(
        retried.already_executed,
        "the retry found the first execution's events: {retried:?}"
    );
    assert_eq!(retried.command_id, command_id);
    assert_withdrew_60(&retried);
    assert_eq!(balance(&accounts).await, (40, 3), "debited once");
    assert_eq!(withdrawals(&stored_types(&db).await), 1);
    assert_eq!(proxy.fired(), 1);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_resolves_a_lost_answer_itself_when_the_store_comes_back() {
    let (db, proxy, store) = setup().await;
    withdraw_through_a_lost_answer(
        db,
        proxy,
        store.with_options(StoreOptions::default().group_commit(None)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_group_commit_is_resolved_the_same_way() {
    let (db, proxy, store) = setup().await;
    // Every append grouped, one group at a time, the one place taken by a
    // group waiting on a row that another transaction holds: the
    // withdrawal has to wait for the next group.
    let store = Arc::new(store.with_options(
        StoreOptions::default().group_commit(GroupCommit::default().max_in_flight(1).max_alone(0)),
    ));
    let accounts = Arc::new(Accounts::new(store.clone(), ()));
    open_with_100(&accounts).await;
    let HeldAppend {
        holder,
        append: blocked,
    } = HeldAppend::start(&db, store.clone(), stream("blocker")).await;

    // The group's statement is the next append sent: its answer is lost.
    proxy.drop_reply_after(APPEND, Mode::Pass);
    let withdrawal = {
        let accounts = accounts.clone();
        tokio::spawn(async move { accounts.execute("acc", Withdraw { amount: 60 }).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.rollback().await.expect("let the blocker go");
    let blocker = blocked.await.expect("join").expect("the blocker's append");
    assert_eq!(blocker.stream_version, 1);
    let outcome = withdrawal
        .await
        .expect("join")
        .expect("sending the append again finds the stored withdrawal");
    assert_eq!(proxy.fired(), 1, "the group's answer was lost");
    assert_withdrew_60(&outcome);
    assert_eq!(balance(&accounts).await, (40, 3), "debited once");
    db.drop_schema().await;
}

/// Withdraws 60 from an account of 100 while the answer to the append is
/// lost (only the reply; the database stays reachable): the store sends
/// it again, finds it stored, and the account is debited once.
async fn withdraw_through_a_lost_answer(
    db: TestStore,
    proxy: FaultProxy,
    store: PostgresEventStore,
) {
    let accounts = Accounts::new(Arc::new(store), ());
    open_with_100(&accounts).await;

    proxy.drop_reply_after(APPEND, Mode::Pass);
    let outcome = accounts
        .execute("acc", Withdraw { amount: 60 })
        .await
        .expect("sending the append again finds the stored withdrawal");
    assert_eq!(proxy.fired(), 1, "the first answer was lost");
    assert_withdrew_60(&outcome);
    assert_eq!(balance(&accounts).await, (40, 3), "debited once");
    assert_eq!(
        stored_types(&db).await,
        ["AccountOpened", "DepositMade", "WithdrawalMade"]
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_never_reached_the_database_is_unavailable_and_stores_nothing() {
    let db = TestStore::new().await;
    open_with_100(&Accounts::new(db.shared(), ())).await;
    let proxy = FaultProxy::to_test_database().await;
    proxy.set_mode(Mode::RefuseNew);
    // A fresh pool: it has no connection yet, and gets none.
    let accounts = Accounts::new(Arc::new(proxied_store(&proxy, &db.schema)), ());

    let command_id = Uuid::now_v7();
    let refused = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Store(StoreError::Unavailable(_)))
        ),
        "nothing was sent, so the store is unavailable and nothing is stored: {refused:?}"
    );
    assert!(proxy.refused() > 0, "the connection went to the proxy");
    assert_eq!(stored_types(&db).await, ["AccountOpened", "DepositMade"]);

    // Reachable again: the same command is applied, once.
    proxy.set_mode(Mode::Pass);
    let outcome = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await
        .expect("the withdrawal is applied");
    assert!(!outcome.already_executed, "nothing was stored before");
    assert_withdrew_60(&outcome);
    assert_eq!(balance(&accounts).await, (40, 3));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_could_not_be_sent_is_unavailable_and_stores_nothing() {
    let (db, proxy, store) = setup().await;
    // With the state cache the withdrawal goes straight to the append: the
    // append itself is what cannot reach the database.
    let accounts =
        Accounts::new(Arc::new(store), ()).with_options(PipelineOptions::default().state_cache(10));
    open_with_100(&accounts).await;

    proxy.set_mode(Mode::Down);
    let refused = accounts.execute("acc", Withdraw { amount: 60 }).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Store(StoreError::Unavailable(_)))
        ),
        "the append was never sent: unavailable, not outcome unknown: {refused:?}"
    );
    assert_eq!(proxy.fired(), 0);
    assert_eq!(stored_types(&db).await, ["AccountOpened", "DepositMade"]);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_the_store_level_append_is_outcome_unknown() {
    let (db, proxy, store) = setup().await;
    let thing = stream("raw");
    // Prepares the append statement on the connection: the lost append below
    // runs it as a cached statement (only Bind/Execute are sent).
    store
        .append(&thing, ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("first append");

    let events = ticks(2);
    let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
    proxy.drop_reply_after(APPEND, Mode::Down);
    let lost = store
        .append(&thing, ExpectedVersion::Exact(1), events.clone())
        .await;
    assert!(
        matches!(lost, Err(StoreError::OutcomeUnknown(_))),
        "the append was sent and its answer lost: {lost:?}"
    );
    assert_eq!(proxy.fired(), 1);
    let stored_ids = |stored: Vec<cqrskit::StoredEvent>| -> Vec<Uuid> {
        stored
            .into_iter()
            .skip(1)
            .map(|event| event.event_id)
            .collect()
    };
    let stored = db
        .store
        .read_stream(&thing, 1, 10)
        .await
        .expect("read directly");
    assert_eq!(stored_ids(stored), ids, "the lost append was committed");

    proxy.set_mode(Mode::Pass);
    let again = store
        .append(&thing, ExpectedVersion::Exact(1), events)
        .await
        .expect("appending the same events again succeeds");
    assert!(again.already_stored, "{again:?}");
    assert_eq!(again.stream_version, 3);
    let committed: Vec<Uuid> = again.events.iter().map(|event| event.event_id).collect();
    assert_eq!(committed, ids);
    let versions: Vec<u64> = again.events.iter().map(|event| event.version).collect();
    assert_eq!(versions, [2, 3]);
    let stored = db
        .store
        .read_stream(&thing, 1, 10)
        .await
        .expect("read directly");
    assert_eq!(stored_ids(stored), ids, "stored once");
    db.drop_schema().await;
}

/// The proxy itself: it loses the answer only after the statement ran and
/// committed, both on a fresh connection (the statement is prepared in a
/// round trip of its own just before) and for a statement prepared earlier
/// on the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_loses_the_answer_after_the_statement_committed() {
    let db = TestStore::new().await;
    let table = db.table("probe");
    // language=SQL
    sqlx::query(&format!("CREATE TABLE {table} (n int NOT NULL)"))
        .execute(db.pool())
        .await
        .expect("create the probe table");
    let proxy = FaultProxy::to_test_database().await;
    let insert = format!("INSERT INTO {table} VALUES ($1)");

    // Fresh connection: Parse/Describe/Sync go first, and must not fire.
    let mut fresh = PgConnection::connect(&proxy.database_url())
        .await
        .expect("connect through the proxy");
    proxy.drop_reply_after(APPEND, Mode::Pass);
    let lost = sqlx::query(&insert).bind(1).execute(&mut fresh).await;
    assert!(matches!(lost, Err(sqlx::Error::Io(_))), "{lost:?}");
    assert_eq!((proxy.fired(), proxy.mode()), (1, Mode::Pass));

    // Prepared earlier on the connection: only Bind/Execute/Sync are sent.
    let mut warm = PgConnection::connect(&proxy.database_url())
        .await
        .expect("connect through the proxy");
    sqlx::query(&insert)
        .bind(2)
        .execute(&mut warm)
        .await
        .expect("passes while unarmed");
    proxy.drop_reply_after(APPEND, Mode::Pass);
    let lost = sqlx::query(&insert).bind(3).execute(&mut warm).await;
    assert!(matches!(lost, Err(sqlx::Error::Io(_))), "{lost:?}");
    assert_eq!(proxy.fired(), 2);

    // language=SQL
    let stored: Vec<i32> = sqlx::query_scalar(&format!("SELECT n FROM {table} ORDER BY n"))
        .fetch_all(db.pool())
        .await
        .expect("read directly");
    assert_eq!(stored, [1, 2, 3], "every insert committed");
    db.drop_schema().await;
}

/// The proxy's partition holds traffic without closing anything, and
/// delivers it once healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_connection_hangs_until_the_partition_heals() {
    let proxy = FaultProxy::to_test_database().await;
    let mut connection = PgConnection::connect(&proxy.database_url())
        .await
        .expect("connect through the proxy");
    proxy.set_mode(Mode::Blackhole);
    let query = tokio::spawn(async move {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut connection)
            .await
            .expect("answered once the partition heals");
        one
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "no answer crosses a partition");
    proxy.set_mode(Mode::Pass);
    let one = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("answered after the partition healed")
        .expect("the query task");
    assert_eq!(one, 1);
}
