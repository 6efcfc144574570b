//! Setting a store up and letting it go: migrating from many sessions at once,
//! checking a schema's migrations at start-up, schema names at PostgreSQL's
//! identifier limit, and a dropped store handing its connections back.

use std::time::Duration;

use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::postgres::{database_url, pool};
use cqrskit::postgres::{Error, MigrationName, PostgresEventStore, SchemaStatus, StoreOptions};
use cqrskit::{EventStore, ExpectedVersion, PipelineOptions};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::task::JoinSet;
use uuid::Uuid;

/// A pool of its own, so its sessions are not shared with any other store's.
async fn own_pool(max_connections: u32, application_name: &str) -> PgPool {
    let options: PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options.application_name(application_name))
        .await
        .expect("PostgreSQL is reachable")
}

/// How many sessions named `application_name` the server has open.
async fn sessions(observer: &PgPool, application_name: &str) -> i64 {
    // language=SQL
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(application_name)
        .fetch_one(observer)
        .await
        .expect("count sessions")
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    // language=SQL
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(pool)
        .await
        .expect("drop the test schema");
}

/// The next notification within `within`, if one comes.
async fn wait(
    listener: &mut PgListener,
    within: Duration,
) -> Option<Result<sqlx::postgres::PgNotification, sqlx::Error>> {
    tokio::time::timeout(within, listener.recv()).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_of_a_store_that_appended_closes_its_connections() {
    let observer = pool().await;
    let application_name = format!("release_{}", Uuid::now_v7().simple());
    let schema = format!("test_setup_{}", Uuid::now_v7().simple());
    let store = PostgresEventStore::from_pool(own_pool(3, &application_name).await)
        .with_schema(&schema)
        .expect("valid schema name");
    store.migrate().await.expect("migrations apply");
    let clone = store.clone();
    // Both handles append, so the notifier has work to do when they drop.
    for handle in [&store, &clone] {
        handle
            .append(&stream("release"), ExpectedVersion::Any, ticks(1))
            .await
            .expect("append");
    }
    assert!(sessions(&observer, &application_name).await > 0);

    drop(store);
    drop(clone);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = sessions(&observer, &application_name).await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} sessions still open 5 s after the last store handle dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop_schema(&observer, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_just_before_the_store_drops_are_still_announced() {
    let observer = pool().await;
    let schema = format!("test_setup_{}", Uuid::now_v7().simple());
    // A long interval, so the second append is still waiting to be announced
    // when the store drops.
    let store = PostgresEventStore::from_pool(own_pool(3, "announce_on_drop").await)
        .with_schema(&schema)
        .expect("valid schema name")
        .with_options(StoreOptions::default().notify_interval(Duration::from_millis(500)));
    store.migrate().await.expect("migrations apply");
    let mut listener = PgListener::connect_with(&observer)
        .await
        .expect("listener connects");
    listener
        .listen(&store.notification_channel())
        .await
        .expect("listen");

    for _ in 0..2 {
        store
            .append(&stream("last words"), ExpectedVersion::Any, ticks(1))
            .await
            .expect("append");
    }
    drop(store);

    for which in ["first", "second"] {
        wait(&mut listener, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("the {which} notification never came"))
            .expect("notification");
    }
    drop_schema(&observer, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_in_separate_sessions_migrate_one_fresh_schema_at_once() {
    const ROUNDS: usize = 5;
    const STORES: usize = 20;
    let observer = pool().await;
    for round in 0..ROUNDS {
        let schema = format!("test_setup_{}", Uuid::now_v7().simple());
        // Connected before any of them starts, so they start together.
        let mut stores = Vec::new();
        for _ in 0..STORES {
            stores.push(
                PostgresEventStore::from_pool(own_pool(1, "concurrent_migrate").await)
                    .with_schema(&schema)
                    .expect("valid schema name"),
            );
        }
        let mut migrations = JoinSet::new();
        for store in stores {
            migrations.spawn(async move { store.migrate().await });
        }
        let mut failures = Vec::new();
        while let Some(result) = migrations.join_next().await {
            if let Err(error) = result.expect("the migration task ends") {
                failures.push(error.to_string());
            }
        }
        assert!(
            failures.is_empty(),
            "round {round}: {} of {STORES} concurrent migrations failed: {failures:?}",
            failures.len()
        );
        drop_schema(&observer, &schema).await;
    }
}

/// The status `verify_schema` refused, or a panic naming what it did instead.
async fn refused(store: &PostgresEventStore) -> SchemaStatus {
    match store.verify_schema().await {
        Err(Error::SchemaNotCurrent(status)) => *status,
        other => panic!("expected SchemaNotCurrent, got {other:?}"),
    }
}

fn versions(names: &[MigrationName]) -> Vec<i64> {
    names.iter().map(|name| name.version).collect()
}

/// Runs `sql` (with `$1` the version) against the migration record.
async fn record(pool: &PgPool, sql: &str, version: i64) {
    sqlx::query(sql)
        .bind(version)
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_missing_a_migration_is_refused_at_start_up_and_one_ahead_is_not() {
    let observer = pool().await;
    let schema = format!("test_setup_{}", Uuid::now_v7().simple());
    let store = PostgresEventStore::from_pool(observer.clone())
        .with_schema(&schema)
        .expect("valid schema name");

    // Not there at all: every migration is pending.
    let fresh = store.schema_status().await.expect("status");
    assert!(fresh.applied.is_empty() && !fresh.is_current());
    let shipped = fresh.pending.len();
    let last = fresh.pending.last().expect("migrations ship").clone();

    store.migrate().await.expect("migrate");
    let current = store.verify_schema().await.expect("current after migrate");
    assert_eq!(current.applied.len(), shipped);
    assert!(current.pending.is_empty() && current.newer.is_empty());

    // The last migration not applied (the version before deployed it, and
    // nobody ran `migrate` for this one): refused, and named.
    let table = format!("\"{schema}\"._sqlx_migrations");
    // language=SQL
    let checksum: Vec<u8> = sqlx::query_scalar(&format!(
        "DELETE FROM {table} WHERE version = $1 RETURNING checksum"
    ))
    .bind(last.version)
    .fetch_one(&observer)
    .await
    .expect("forget the last migration");
    let behind = refused(&store).await;
    assert_eq!(versions(&behind.pending), [last.version]);
    let message = Error::SchemaNotCurrent(Box::new(behind)).to_string();
    assert!(
        message.contains(&last.to_string()) && message.contains("migrate"),
        "{message}"
    );
    // language=SQL
    sqlx::query(&format!(
        "INSERT INTO {table} (version, description, success, checksum, execution_time)
         VALUES ($1, $2, true, $3, 0)"
    ))
    .bind(last.version)
    .bind(&last.description)
    .bind(&checksum)
    .execute(&observer)
    .await
    .expect("remember it again");
    store.verify_schema().await.expect("current again");

    // A newer version migrated it (a rolling deploy): this one goes on.
    let future = 29991231000001;
    // language=SQL
    let newer = format!(
        "INSERT INTO {table} (version, description, success, checksum, execution_time)
         VALUES ($1, 'from the future', true, '\\x00', 0)"
    );
    record(&observer, &newer, future).await;
    let ahead = store.verify_schema().await.expect("a schema ahead passes");
    assert_eq!(ahead.newer, [future]);
    assert!(ahead.to_string().contains("newer"), "{ahead}");

    // Applied from another text, or left half-done: refused.
    // language=SQL
    let modify = format!("UPDATE {table} SET checksum = '\\x00' WHERE version = $1");
    record(&observer, &modify, last.version).await;
    assert_eq!(versions(&refused(&store).await.modified), [last.version]);
    // language=SQL
    let half_done = format!("UPDATE {table} SET success = false WHERE version = $1");
    record(&observer, &half_done, last.version).await;
    assert_eq!(versions(&refused(&store).await.failed), [last.version]);
    drop_schema(&observer, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_a_schema_of_63_characters_wakes_its_listeners() {
    let observer = pool().await;
    let mut schema = format!("test_setup_{}_", Uuid::now_v7().simple());
    while schema.len() < 63 {
        schema.push('x');
    }
    let store = PostgresEventStore::from_pool(observer.clone())
        .with_schema(&schema)
        .expect("63 characters are a valid schema name");
    store.migrate().await.expect("migrations apply");
    let mut listener = PgListener::connect_with(&observer)
        .await
        .expect("listener connects");
    listener
        .listen(&store.notification_channel())
        .await
        .expect("listen");

    store
        .append(&stream("long"), ExpectedVersion::NoStream, ticks(1))
        .await
        .expect("append");

    let notification = wait(&mut listener, Duration::from_secs(5))
        .await
        .expect("the append is announced")
        .expect("notification");
    assert_eq!(notification.channel(), store.notification_channel());
    drop_schema(&observer, &schema).await;
}

/// The store's own pool does not ping a connection before each use (a round
/// trip per command saved), so a command can meet a connection the server
/// has ended (a restart, an administrator, a cut idle connection): its load
/// reads again on a fresh one and its append resends, and the caller sees
/// nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_through_when_the_server_ended_the_pools_connections() {
    use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
    use cqrskit::CommandPipeline;
    use std::sync::Arc;

    let db = cqrs_tests::postgres::TestStore::new().await;
    let application_name = format!("ended_{}", Uuid::now_v7().simple());
    let separator = if database_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}application_name={application_name}",
        database_url()
    );
    let store = PostgresEventStore::connect(&url)
        .await
        .expect("connect")
        .with_schema(&db.schema)
        .expect("schema");
    // Without the cache every command loads, then appends.
    let accounts = Arc::new(
        CommandPipeline::<BankAccount>::new(Arc::new(store), ())
            .with_options(PipelineOptions::default().state_cache(0)),
    );
    let mut opens = JoinSet::new();
    for account in 0..4 {
        let accounts = accounts.clone();
        opens.spawn(async move {
            let owner = "ann".to_owned();
            accounts
                .execute(&format!("acc-{account}"), OpenAccount { owner })
                .await
        });
    }
    while let Some(opened) = opens.join_next().await {
        opened.expect("task").expect("open");
    }

    let observer = pool().await;
    // language=SQL
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&application_name)
    .fetch_all(&observer)
    .await
    .expect("end the pool's sessions");
    assert!(!ended.is_empty(), "the pool held no session to end");
    while sessions(&observer, &application_name).await > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for round in 0..3 {
        for account in 0..4 {
            accounts
                .execute(&format!("acc-{account}"), Deposit { amount: 1 })
                .await
                .unwrap_or_else(|error| panic!("deposit {round} on acc-{account}: {error}"));
        }
    }
    for account in 0..4 {
        let loaded = accounts
            .load(&format!("acc-{account}"))
            .await
            .expect("load");
        assert_eq!((loaded.state.balance, loaded.version), (3, 4));
    }
    db.drop_schema().await;
}
