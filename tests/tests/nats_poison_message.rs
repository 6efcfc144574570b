//! A message whose every delivery ends without an outcome (the consumer
//! dies or freezes handling it: a message that crashes its process) is
//! given up on visibly, as a dead letter, not dropped by JetStream once its
//! deliveries run out.

use std::time::Duration;

use cqrs_tests::nats::{jetstream, unique};
use cqrs_tests::partitioned::{RecordHandler, create_stream, create_table, handled, publish};
use cqrs_tests::postgres::TestStore;
use cqrskit::nats::{Consumer, ConsumerOptions, Outcome};
use cqrskit::postgres::PostgresInbox;

/// Two attempts allowed; the first two deliveries are taken and dropped
/// unsettled (the consumer "died" with each). The third comes (JetStream's
/// `max_deliver` is one more than the attempts) and is dead-lettered
/// without running the handler; nothing comes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_every_delivery_dies_is_dead_lettered() {
    let db = TestStore::new().await;
    create_table(db.pool(), &db.schema).await;
    let jetstream = jetstream().await;
    let prefix = unique("poison");
    let stream = create_stream(&jetstream, &prefix, 1).await;
    publish(&jetstream, &prefix, 7, 1).await;
    let consumer = Consumer::new(
        PostgresInbox::new(&db.store),
        jetstream.clone(),
        RecordHandler {
            table: format!("{}.partition_handled", db.schema),
            owner: "only".to_owned(),
        },
        ConsumerOptions::new(&stream, unique("poison"))
            .max_attempts(2)
            .ack_wait(Duration::from_millis(300)),
    );

    for delivery in 1..=2 {
        let message = consumer
            .fetch_one(Duration::from_secs(5))
            .await
            .expect("fetch")
            .unwrap_or_else(|| panic!("delivery {delivery}"));
        assert_eq!(message.info().expect("info").delivered, delivery);
        // The consumer dies with it: no outcome, no acknowledgement.
        drop(message);
    }
    let third = consumer
        .fetch_one(Duration::from_secs(5))
        .await
        .expect("fetch")
        .expect("a third delivery, to give the message up on");
    let outcome = consumer.process(third).await.expect("process");
    assert!(
        matches!(&outcome, Outcome::DeadLettered { reason } if reason.contains("without an outcome")),
        "{outcome:?}"
    );
    assert!(
        handled(db.pool(), &db.schema).await.is_empty(),
        "the handler did not run"
    );
    let parked = consumer.dead_letters().await.expect("dead letters");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_id, "acc-7-v1");
    assert_eq!(parked[0].deliveries, 3);
    assert!(
        consumer
            .fetch_one(Duration::from_millis(800))
            .await
            .expect("fetch")
            .is_none(),
        "terminated: delivered no more"
    );
    jetstream
        .delete_stream(&stream)
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}
