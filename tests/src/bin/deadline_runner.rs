//! One pass of a deadline runner in a process of its own, for the tests
//! that run it on a host clock other than the database's
//! (`tests/tests/clock_skew.rs`, under libfaketime).
//!
//! Prints the time by its own clock (RFC 3339), then delivers the due
//! payment deadlines (`order.payment-timeout`) of the PostgreSQL store in
//! `SCHEMA` once, and prints the id of each it delivered, one per line.
//! Configured by `DATABASE_URL` and `SCHEMA`.

use std::sync::Arc;

use cqrs_examples::ecommerce::{CancelUnpaidOrder, Order, PAYMENT_TIMEOUT};
use cqrs_tests::env::var;
use cqrskit::CommandPipeline;
use cqrskit::deadline::DeadlineRunner;
use cqrskit::postgres::PostgresEventStore;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("{}", cqrskit::chrono::Utc::now().to_rfc3339());
    let store = PostgresEventStore::connect(&var("DATABASE_URL"))
        .await
        .expect("connect")
        .with_schema(&var("SCHEMA"))
        .expect("schema");
    let orders = Arc::new(CommandPipeline::<Order>::new(Arc::new(store.clone()), ()));
    let delivered = DeadlineRunner::new(Arc::new(store.deadlines()))
        .route::<Order, CancelUnpaidOrder>(PAYMENT_TIMEOUT, orders)
        .deliver_due()
        .await
        .expect("deliver");
    for (id, _) in delivered.done {
        println!("{id}");
    }
}
