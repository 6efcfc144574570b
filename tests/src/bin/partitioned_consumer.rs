//! One instance of a consumer split into partitions, in a process of its
//! own, for the test that kills and freezes instances under a steady flow
//! (`tests/tests/nats_partitions.rs`).
//!
//! Configured by environment: `DATABASE_URL`, `SCHEMA`, `NATS_URL`,
//! `STREAM`, `PREFIX`, `DURABLE`, `OWNER`, `LEASE_MS`, `PARTITIONS`. Prints `running`
//! once started; runs until SIGTERM (then it leaves, giving its partitions
//! up) or SIGKILL; exits with code 2 on an error.

use std::time::Duration;

use cqrs_tests::env::{number, var};
use cqrs_tests::nats::connect;
use cqrs_tests::partitioned::RecordHandler;
use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{Consumer, ConsumerOptions, PartitionedConsumer};
use cqrskit::postgres::PostgresInbox;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = var("OWNER");
    let store = cqrs_tests::env::process_store(&owner, 8).await;
    let jetstream = jetstream::new(connect(&var("NATS_URL")).await);
    let handler = RecordHandler {
        table: format!("{}.partition_handled", var("SCHEMA")),
        owner: owner.clone(),
    };
    let options = ConsumerOptions::new(var("STREAM"), var("DURABLE"))
        .ack_wait(Duration::from_secs(30))
        .batch_size(20);
    let consumer = Consumer::new(PostgresInbox::new(&store), jetstream, handler, options);
    let partitions = usize::try_from(number("PARTITIONS")).expect("a partition count");
    let split = PartitionedConsumer::new(consumer, var("PREFIX"), partitions)
        .expect("partitions")
        .with_owner(owner)
        .with_lease(Duration::from_millis(number("LEASE_MS")));
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    println!("running");
    let result = split
        .run(async move {
            terminate.recv().await;
        })
        .await;
    if let Err(error) = result {
        eprintln!("partitioned_consumer: {error}");
        std::process::exit(2);
    }
}
