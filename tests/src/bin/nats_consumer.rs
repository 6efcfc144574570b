//! A consumer in a process of its own, for the test that kills it between
//! its commit and its acknowledgement (`tests/tests/nats_consumer.rs`).
//!
//! Configured by environment: `DATABASE_URL`, `SCHEMA`, `NATS_URL`,
//! `STREAM`, `DURABLE`, `ACK_WAIT_MS`. It processes messages up to the first
//! withdrawal, for which it commits the handler's writes and the inbox row,
//! prints `committed`, and waits, unacknowledged, for the test to kill it.

use cqrs_tests::env::var;
use cqrs_tests::nats::{RecordWithdrawals, connect};
use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{Consumer, ConsumerOptions, Outcome};
use cqrskit::postgres::{PostgresEventStore, PostgresInbox};
use std::io::Write;
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let schema = var("SCHEMA");
    let store = PostgresEventStore::connect(&var("DATABASE_URL"))
        .await
        .expect("connect")
        .with_schema(&schema)
        .expect("schema");
    let handler = RecordWithdrawals::create(store.pool(), &schema).await;
    let jetstream = jetstream::new(connect(&var("NATS_URL")).await);
    let options = ConsumerOptions::new(var("STREAM"), var("DURABLE")).ack_wait(
        Duration::from_millis(var("ACK_WAIT_MS").parse().expect("ACK_WAIT_MS")),
    );
    let consumer = Consumer::new(PostgresInbox::new(&store), jetstream, handler, options);
    loop {
        let message = consumer
            .fetch_one(Duration::from_secs(10))
            .await
            .expect("fetch")
            .expect("a message");
        // `<prefix>.account.<token>.<slice>.<route>`: withdrawals only.
        if !message.subject.as_str().contains(".withdrawn.") {
            consumer.process(message).await.expect("process");
            continue;
        }
        let committed = consumer.commit(message).await.expect("commit");
        assert_eq!(committed.outcome(), &Outcome::Handled);
        break;
    }
    println!("committed");
    std::io::stdout().flush().expect("flush");
    std::future::pending::<()>().await;
}
