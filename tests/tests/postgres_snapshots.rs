//! Snapshots on PostgreSQL: a snapshot a command's pipeline takes commits in
//! the same transaction as the events it describes.

use cqrs_tests::postgres::TestStore;
use cqrs_tests::scenarios::Accounts;
use cqrskit::PipelineOptions;
use cqrskit::SnapshotPolicy;
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_snapshot_commits_with_the_events_it_describes() {
    let db = TestStore::new().await;
    let accounts = Accounts::new(db.shared(), ())
        .with_options(PipelineOptions::default().snapshots(SnapshotPolicy::Every(3)));
    cqrs_tests::scenarios::open_with_deposits(&accounts, "acc", &[1, 2, 3, 4]).await;
    // The snapshot row was last written by the transaction that stored the
    // event at its version (xmin is the low 32 bits of that transaction's id).
    let row = sqlx::query(&format!(
        "SELECT s.version, s.xmin::text::bigint AS written_by,
                (SELECT e.transaction_id::text::bigint % 4294967296 FROM {events} e
                 WHERE e.aggregate_id = s.aggregate_id AND e.version = s.version) AS event_transaction,
                (SELECT count(DISTINCT e.transaction_id) FROM {events} e) AS transactions
         FROM {snapshots} s WHERE s.aggregate_id = 'acc'",
        events = db.table("events"),
        snapshots = db.table("snapshots"),
    ))
    .fetch_one(db.pool())
    .await
    .expect("a snapshot was saved");
    assert_eq!(row.get::<i64, _>("version"), 3);
    assert_eq!(
        row.get::<i64, _>("written_by"),
        row.get::<i64, _>("event_transaction"),
        "the snapshot committed in a transaction of its own"
    );
    assert_eq!(
        row.get::<i64, _>("transactions"),
        5,
        "one commit per command"
    );
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!((loaded.version, loaded.state.balance), (5, 10));
    db.drop_schema().await;
}
