//! The conformance suite against PostgreSQL, one fresh schema per test: once
//! with group commit (the default), once with each append committed alone.

use std::sync::Arc;

use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::StoreOptions;

macro_rules! postgres {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let db = TestStore::new().await;
            let store = db.store.clone().with_options(StoreOptions::default().group_commit(None));
            cqrs_tests::scenarios::$name(Arc::new(store)).await;
            db.drop_schema().await;
        }
    )*};
}

cqrs_tests::for_each_scenario!(postgres);

mod group_commit {
    use super::*;

    macro_rules! grouped {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = TestStore::new().await;
                let store = db.store.clone().with_options(StoreOptions::default());
                cqrs_tests::scenarios::$name(Arc::new(store)).await;
                db.drop_schema().await;
            }
        )*};
    }

    cqrs_tests::for_each_scenario!(grouped);
}
