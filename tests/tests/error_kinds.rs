//! Every layer's error answers `kind()` with the one `ErrorKind` a caller
//! acts on: each kind provoked for real (a racing writer, a refused event,
//! an unreadable event, a server that is not there, a schema not migrated,
//! an operator naming nothing), through the store, the pipeline, the
//! PostgreSQL crate and its operator's commands.

use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, OpenAccount, Withdraw};
use cqrs_tests::fixtures::{event, stream};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::admin::Admin;
use cqrskit::postgres::sqlx::postgres::PgPoolOptions;
use cqrskit::postgres::{Partition, PostgresEventStore, Request};
use cqrskit::{CommandPipeline, ErrorKind, EventStore, ExpectedVersion};

/// A store whose server is not there (nothing listens on port 1).
fn nowhere() -> PostgresEventStore {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .expect("a lazy pool");
    PostgresEventStore::from_pool(pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_pipeline_name_the_kind_of_each_failure() {
    let db = TestStore::new().await;
    let store = db.shared();
    let a = stream("a");
    store
        .append(&a, ExpectedVersion::NoStream, vec![event("Ticked", "{}")])
        .await
        .expect("first append");

    let raced = store
        .append(&a, ExpectedVersion::NoStream, vec![event("Ticked", "{}")])
        .await
        .expect_err("the stream exists");
    assert_eq!(raced.kind(), ErrorKind::Conflict, "{raced}");
    assert!(raced.kind().is_transient());

    let refused = store
        .append(
            &a,
            ExpectedVersion::Any,
            vec![event("Ticked", r#"{"text": "a\u0000b"}"#)],
        )
        .await
        .expect_err("NUL is refused");
    assert_eq!(refused.kind(), ErrorKind::Rejected, "{refused}");
    assert!(!refused.kind().is_transient());

    // An event of a type the aggregate does not know, in its stream.
    let accounts = CommandPipeline::<BankAccount>::new(store.clone(), ());
    store
        .append(
            &CommandPipeline::<BankAccount>::stream_id("acc"),
            ExpectedVersion::NoStream,
            vec![event("SomethingElse", "{}")],
        )
        .await
        .expect("a foreign event");
    let unreadable = accounts
        .execute("acc", Withdraw { amount: 1 })
        .await
        .expect_err("the stream cannot be loaded");
    assert_eq!(unreadable.kind(), ErrorKind::CorruptData, "{unreadable}");

    let rejected = accounts
        .execute("fresh", Withdraw { amount: 1 })
        .await
        .expect_err("no such account");
    assert!(rejected.rejection().is_some());
    assert_eq!(rejected.kind(), ErrorKind::Rejected);

    // A server that is not there: nothing was written, retrying is right.
    let gone: Arc<dyn EventStore> = Arc::new(nowhere());
    let unavailable = CommandPipeline::<BankAccount>::new(gone, ())
        .execute("acc", OpenAccount { owner: "A".into() })
        .await
        .expect_err("no server");
    assert_eq!(unavailable.kind(), ErrorKind::Unavailable, "{unavailable}");
    assert!(unavailable.kind().is_transient());
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_crate_names_configuration_and_what_is_not_there() {
    let db = TestStore::new().await;
    let unmigrated = PostgresEventStore::from_pool(db.pool().clone())
        .with_schema(&format!("{}_never", db.schema))
        .expect("a schema name");
    let behind = unmigrated.verify_schema().await.expect_err("not migrated");
    assert_eq!(behind.kind(), ErrorKind::Configuration, "{behind}");

    let invalid = Partition::new(4, 4).expect_err("index past the count");
    assert_eq!(invalid.kind(), ErrorKind::Configuration, "{invalid}");

    let admin = Admin::new(db.store.clone());
    let unknown = admin
        .request("nobody", Request::Rebuild)
        .await
        .expect_err("no such projection");
    assert_eq!(unknown.kind(), ErrorKind::NotFound, "{unknown}");

    let unreachable = nowhere().migrate().await.expect_err("no server");
    assert_eq!(unreachable.kind(), ErrorKind::Unavailable, "{unreachable}");
    db.drop_schema().await;
}

/// A wrong port, a database that does not exist, an address nobody
/// answers: connecting says so at once, naming the host, the port and the
/// cause, instead of a pool's timeout half a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_wrong_address_names_it_and_the_cause_within_seconds() {
    use cqrskit::postgres::{CONNECT_TIMEOUT, Error};

    let started = std::time::Instant::now();
    let refused = PostgresEventStore::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&refused, Error::Connect { target, .. } if target == "127.0.0.1:1"),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("127.0.0.1:1") && message.to_lowercase().contains("refused"),
        "{message}"
    );
    assert_eq!(refused.kind(), ErrorKind::Unavailable);

    let url = cqrs_tests::postgres::database_url();
    let mut options: cqrskit::postgres::sqlx::postgres::PgConnectOptions =
        url.parse().expect("the test database's URL");
    options = options.database("no_such_database_here");
    let missing = PostgresEventStore::connect_with(options)
        .await
        .expect_err("no such database");
    let message = missing.to_string();
    assert!(message.contains("no_such_database_here"), "{message}");
    assert!(matches!(missing, Error::Connect { .. }), "{missing:?}");
    assert_eq!(missing.kind(), ErrorKind::Configuration);

    // A server that takes the connection and never answers (a firewall
    // that drops, a frozen server): the connect timeout, not the pool's.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = silent.local_addr().expect("address").port();
    let started = std::time::Instant::now();
    let frozen =
        PostgresEventStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .await
            .expect_err("nobody answers");
    assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
    assert!(
        frozen.to_string().contains(&format!("127.0.0.1:{port}")),
        "{frozen}"
    );
    assert_eq!(frozen.kind(), ErrorKind::Unavailable);
    drop(silent);
}
