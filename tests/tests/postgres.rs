//! The conformance suite against PostgreSQL, one fresh schema per test.

use cqrs_tests::postgres::TestStore;

macro_rules! postgres {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let db = TestStore::new().await;
            cqrs_tests::scenarios::$name(db.shared()).await;
            db.drop_schema().await;
        }
    )*};
}

cqrs_tests::for_each_scenario!(postgres);
