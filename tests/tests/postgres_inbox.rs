//! The PostgreSQL inbox (`PostgresInbox`): what a message consumer records
//! with its handler's writes, and the dead letters it keeps; and the tables
//! of earlier versions, which the migrations take over.

use std::time::Duration;

use cqrs_tests::postgres::TestStore;
use cqrskit::inbox::{
    DeadLetters, Inbox, MessageKey, ParkedMessage, PartitionKey, PartitionLeases,
};
use cqrskit::postgres::PostgresInbox;
use cqrskit::postgres::sqlx;

fn key<'a>(source: &'a str, id: &'a str) -> MessageKey<'a> {
    MessageKey {
        consumer: "payouts",
        source,
        id,
    }
}

fn parked(source: &str, id: &str) -> ParkedMessage {
    ParkedMessage {
        source: source.into(),
        message_id: id.into(),
        subject: "bank.account.withdrawn.7".into(),
        headers: vec![
            ("ce-type".into(), "withdrawn".into()),
            ("x-trace".into(), "first".into()),
            ("x-trace".into(), "second".into()),
        ],
        body: b"{\"amount\":\xff}".to_vec(),
        reason: "the handler refused".into(),
        deliveries: 5,
        publish_error: None,
    }
}

/// A record commits with the transaction it was made in, or not at all;
/// once committed the message is recognised, per consumer and source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_counts_only_once_its_transaction_commits() {
    let db = TestStore::new().await;
    let inbox = PostgresInbox::new(&db.store);

    let mut rolled_back = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .record(&mut rolled_back, key("/bank", "1"))
            .await
            .expect("record")
    );
    drop(rolled_back);

    let mut first = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .record(&mut first, key("/bank", "1"))
            .await
            .expect("record"),
        "a record rolled back is forgotten"
    );
    sqlx::query(&format!("CREATE TABLE {} (id int)", db.table("effects")))
        .execute(PostgresInbox::connection(&mut first))
        .await
        .expect("a write of the handler's");
    inbox.commit(first).await.expect("commit");

    let mut again = inbox.begin().await.expect("begin");
    assert!(
        !inbox
            .record(&mut again, key("/bank", "1"))
            .await
            .expect("record"),
        "a redelivery is recognised"
    );
    assert!(
        inbox
            .record(&mut again, key("/shop", "1"))
            .await
            .expect("record"),
        "the same id from another source is another message"
    );
    let other = MessageKey {
        consumer: "audit",
        ..key("/bank", "1")
    };
    assert!(
        inbox.record(&mut again, other).await.expect("record"),
        "another consumer processes it on its own"
    );
    inbox.commit(again).await.expect("commit");

    assert_eq!(
        inbox
            .prune("payouts", Duration::from_secs(3600))
            .await
            .expect("prune"),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        inbox.prune("payouts", Duration::ZERO).await.expect("prune"),
        2
    );
    assert_eq!(
        inbox.prune("audit", Duration::ZERO).await.expect("prune"),
        1
    );
    db.drop_schema().await;
}

/// A dead letter keeps the message as received (headers in order, a name
/// repeated, a body that is no UTF-8), its publish failure, and leaves only
/// with the transaction that takes it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_the_message_and_leaves_only_on_commit() {
    let db = TestStore::new().await;
    let inbox = PostgresInbox::new(&db.store);
    inbox
        .park("payouts", &parked("/bank", "7"))
        .await
        .expect("park");
    let mut changed = parked("/bank", "7");
    changed.reason = "another reason".into();
    inbox.park("payouts", &changed).await.expect("park again");
    inbox
        .publish_failed(key("/bank", "7"), "no stream captures dead.payouts")
        .await
        .expect("publish failed");

    let kept = inbox.parked("payouts").await.expect("list");
    let mut expected = parked("/bank", "7");
    expected.publish_error = Some("no stream captures dead.payouts".into());
    assert_eq!(kept, vec![expected.clone()], "kept as first parked");
    assert_eq!(
        inbox
            .parked_reason(key("/bank", "7"))
            .await
            .expect("reason"),
        Some("the handler refused".into())
    );
    assert_eq!(
        inbox
            .parked_reason(key("/shop", "7"))
            .await
            .expect("reason"),
        None
    );
    assert!(inbox.parked("audit").await.expect("list").is_empty());

    let mut rolled_back = inbox.begin().await.expect("begin");
    let taken = inbox
        .unpark(&mut rolled_back, key("/bank", "7"))
        .await
        .expect("unpark");
    assert_eq!(taken, Some(expected.clone()));
    drop(rolled_back);
    assert_eq!(
        inbox.parked("payouts").await.expect("list").len(),
        1,
        "still there"
    );

    let mut replayed = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .unpark(&mut replayed, key("/bank", "7"))
            .await
            .expect("unpark")
            .is_some()
    );
    inbox.commit(replayed).await.expect("commit");
    assert!(inbox.parked("payouts").await.expect("list").is_empty());
    assert_eq!(
        inbox
            .parked_reason(key("/bank", "7"))
            .await
            .expect("reason"),
        None,
        "a replayed message is no longer given up on"
    );
    // Closed, not gone: the operator sees its history.
    let admin = cqrskit::postgres::admin::Admin::new(db.store.clone());
    let history = admin
        .consumer_dead_letters("payouts", true)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].status(), history[0].replays), ("replayed", 1));
    assert!(history[0].resolved_at.is_some());
    // Given up on again (a replay that handled it, then a new failure of
    // the same message): open again.
    inbox.park("payouts", &expected).await.expect("park again");
    assert_eq!(inbox.parked("payouts").await.expect("list").len(), 1);
    db.drop_schema().await;
}

/// The NATS consumer of earlier versions made `nats_inbox` and
/// `nats_dead_letters` at run time, keyed by message id alone: the
/// migration takes them over with their rows, and a message recorded
/// without a source is still recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_takes_over_the_tables_of_earlier_versions() {
    let db = TestStore::new().await;
    let (inbox_table, dead_table) = (db.table("inbox"), db.table("inbox_dead_letters"));
    let (old_inbox, old_dead) = (db.table("nats_inbox"), db.table("nats_dead_letters"));
    let migrations = db.table("_sqlx_migrations");
    sqlx::raw_sql(&format!(
        "DROP TABLE {inbox_table}; DROP TABLE {dead_table};
         DELETE FROM {migrations} WHERE version >= 20261207000013;
         CREATE TABLE {old_inbox} (
             consumer text NOT NULL, message_id text NOT NULL,
             processed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer, message_id));
         CREATE TABLE {old_dead} (
             consumer text NOT NULL, message_id text NOT NULL, subject text NOT NULL,
             headers jsonb NOT NULL, body bytea NOT NULL, reason text NOT NULL,
             deliveries bigint NOT NULL, parked_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer, message_id));
         INSERT INTO {old_inbox} (consumer, message_id) VALUES ('payouts', '1');
         INSERT INTO {old_dead} (consumer, message_id, subject, headers, body, reason, deliveries)
         VALUES ('payouts', '9', 'bank.x', '{{\"a\": [\"b\"]}}', '\\x00', 'old', 3);"
    ))
    .execute(db.pool())
    .await
    .expect("a schema of an earlier version");
    assert!(
        db.store.verify_schema().await.is_err(),
        "the inbox migration is pending"
    );

    db.store.migrate().await.expect("migrate");
    db.store.verify_schema().await.expect("current");
    let inbox = PostgresInbox::new(&db.store);
    let mut transaction = inbox.begin().await.expect("begin");
    assert!(
        !inbox
            .record(&mut transaction, key("/bank", "1"))
            .await
            .expect("record"),
        "recorded without a source by an earlier version"
    );
    assert!(
        inbox
            .record(&mut transaction, key("/bank", "2"))
            .await
            .expect("record")
    );
    inbox.commit(transaction).await.expect("commit");
    let kept = inbox.parked("payouts").await.expect("list");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (
            kept[0].source.as_str(),
            kept[0].message_id.as_str(),
            kept[0].reason.as_str()
        ),
        ("", "9", "old")
    );
    assert_eq!(kept[0].headers, vec![("a".to_owned(), "b".to_owned())]);
    // The new key: the same id from two sources are two dead letters.
    inbox
        .park("payouts", &parked("/shop", "9"))
        .await
        .expect("park");
    assert_eq!(inbox.parked("payouts").await.expect("list").len(), 2);
    let old_left: Option<String> = sqlx::query_scalar(&format!(
        "SELECT to_regclass('{}')::text",
        old_inbox.replace('\'', "''")
    ))
    .fetch_one(db.pool())
    .await
    .expect("look");
    assert_eq!(old_left, None, "renamed, not copied");
    db.drop_schema().await;
}

/// A dead letter an operator skipped is never handled: not when replayed
/// (it is closed), and not when the message comes again as new (its
/// durable consumer made again, the event published again), since the
/// skip records it as processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_dead_letter_is_never_handled() {
    let db = TestStore::new().await;
    let inbox = PostgresInbox::new(&db.store);
    inbox
        .park("payouts", &parked("/bank", "8"))
        .await
        .expect("park");
    let admin = cqrskit::postgres::admin::Admin::new(db.store.clone());
    let skipped = admin
        .skip_consumer_dead_letter("payouts", "/bank", "8")
        .await
        .expect("skip");
    assert_eq!(skipped.status(), "skipped");
    let mut transaction = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .unpark(&mut transaction, key("/bank", "8"))
            .await
            .expect("unpark")
            .is_none(),
        "a replay finds it closed"
    );
    assert!(
        !inbox
            .record(&mut transaction, key("/bank", "8"))
            .await
            .expect("record"),
        "delivered afresh, it counts as processed"
    );
    drop(transaction);
    db.drop_schema().await;
}

fn partition(owner: &str) -> PartitionKey<'_> {
    PartitionKey {
        consumer: "payouts",
        partition: 2,
        owner,
    }
}

/// A split consumer's partition count is recorded once; an instance
/// counts the instances seen lately; a partition's lease is held by one
/// instance at a time and taken over only once lapsed; a transaction that
/// proved the lease keeps it from being taken over until it ends, and
/// after a takeover the old holder's proof fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_lease_fences_the_writer_it_was_taken_from() {
    let db = TestStore::new().await;
    let inbox = PostgresInbox::new(&db.store);
    assert_eq!(inbox.partitioning("payouts", 4).await.expect("record"), 4);
    assert_eq!(
        inbox.partitioning("payouts", 8).await.expect("read"),
        4,
        "the first count stays"
    );

    let within = Duration::from_secs(5);
    assert_eq!(inbox.heartbeat("payouts", "a", within).await.expect("a"), 1);
    assert_eq!(inbox.heartbeat("payouts", "b", within).await.expect("b"), 2);
    inbox.leave("payouts", "a").await.expect("leave");
    assert_eq!(inbox.heartbeat("payouts", "b", within).await.expect("b"), 1);

    let lease = Duration::from_millis(300);
    let token = inbox
        .acquire(partition("a"), lease)
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(
        inbox.acquire(partition("b"), lease).await.expect("try"),
        None,
        "held"
    );
    assert!(
        inbox
            .renew(partition("a"), token, lease)
            .await
            .expect("renew")
    );

    // A's transaction proves the lease; it lapses meanwhile, but B cannot
    // take it until the transaction ends.
    let mut proving = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .hold(&mut proving, partition("a"), token, Duration::from_secs(10))
            .await
            .expect("hold")
    );
    tokio::time::sleep(lease * 2).await;
    assert_eq!(
        inbox.acquire(partition("b"), lease).await.expect("try"),
        None,
        "a transaction that proved the lease keeps it"
    );
    inbox.commit(proving).await.expect("commit");
    let taken = inbox
        .acquire(partition("b"), lease)
        .await
        .expect("acquire")
        .expect("lapsed and free of transactions");
    assert!(taken > token, "a takeover moves the token");

    // A, awake again, proves nothing and renews nothing.
    let mut late = inbox.begin().await.expect("begin");
    assert!(
        !inbox
            .hold(&mut late, partition("a"), token, Duration::from_secs(10))
            .await
            .expect("hold")
    );
    late.rollback().await.expect("rollback");
    assert!(
        !inbox
            .renew(partition("a"), token, lease)
            .await
            .expect("renew")
    );

    // B's transaction idles past its bound (B frozen): the server ends it,
    // and the partition can be taken once the lease lapses.
    let mut frozen = inbox.begin().await.expect("begin");
    assert!(
        inbox
            .hold(
                &mut frozen,
                partition("b"),
                taken,
                Duration::from_millis(200)
            )
            .await
            .expect("hold")
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = inbox
        .acquire(partition("c"), lease)
        .await
        .expect("acquire")
        .expect("the frozen transaction was ended");
    assert!(again > taken);
    assert!(
        sqlx::query("SELECT 1").execute(&mut *frozen).await.is_err(),
        "the frozen transaction's session was ended"
    );
}
