//! The conformance suite against the in-memory store.

use std::sync::Arc;

use cqrskit::InMemoryEventStore;

macro_rules! in_memory {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            cqrs_tests::scenarios::$name(Arc::new(InMemoryEventStore::new())).await;
        }
    )*};
}

cqrs_tests::for_each_scenario!(in_memory);
