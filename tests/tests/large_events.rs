//! Large events through the projection runner: a batch that cannot be read
//! within the runner's statement bound (a third of the lease) is not tried
//! again as it was, failing every time; the runner halves its batches until
//! they go through, and grows them back once they do.

use std::sync::Arc;
use std::time::Duration;

use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::sqlx::PgConnection;
use cqrskit::postgres::{ProjectionRunner, RunnerOptions};
use cqrskit::{
    BoxError, DomainEvent, EventEnvelope, EventStore, ExpectedVersion, Metadata, NewEvent,
    Projector, StreamId, async_trait,
};
use serde::{Deserialize, Serialize};

/// An event carrying a large document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
enum DocumentEvent {
    Stored(Stored),
}

/// Records each event's id and size.
struct Sizes {
    table: String,
}

#[async_trait]
impl Projector<PgConnection> for Sizes {
    type Event = DocumentEvent;

    fn name(&self) -> &str {
        "document_sizes"
    }

    async fn project(
        &self,
        event: &EventEnvelope<DocumentEvent>,
        tx: &mut PgConnection,
    ) -> Result<(), BoxError> {
        let DocumentEvent::Stored(stored) = &event.payload;
        sqlx::query(&format!(
            "INSERT INTO {} (event_id, bytes) VALUES ($1, $2)",
            self.table
        ))
        .bind(event.event_id)
        .bind(i64::try_from(stored.data.len())?)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// `bytes` characters of hexadecimal noise (which compresses poorly, as
/// real documents of this size often do), from a seed.
fn noise(seed: u64, bytes: usize) -> String {
    let mut state = seed | 1;
    let mut text = String::with_capacity(bytes);
    while text.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("{state:016x}"));
    }
    text.truncate(bytes);
    text
}

/// 64 documents of 2 MB (128 MB in all), read by a runner whose statements
/// are bounded to 200 ms (a lease of 600 ms) with batches of up to 100
/// events and 256 MB: the first batch cannot be read within the bound, so
/// the runner halves its batches until they can, and applies every event
/// once. (It failed at the first batch every time before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_to_read_within_the_bound_shrinks_until_it_goes_through() {
    const DOCUMENTS: usize = 64;
    let db = TestStore::new().await;
    for n in 0..DOCUMENTS {
        let event = DocumentEvent::Stored(Stored {
            data: noise(n as u64 + 1, 2 * 1024 * 1024),
        });
        db.store
            .append(
                &StreamId::new("document", format!("doc-{n}")),
                ExpectedVersion::NoStream,
                vec![NewEvent::from_event(&event, Metadata::new()).expect("encodes")],
            )
            .await
            .expect("append");
    }
    cqrs_tests::scenarios::settled(&db.shared(), DOCUMENTS).await;
    let table = db.table("document_sizes");
    sqlx::query(&format!(
        "CREATE TABLE {table} (event_id uuid PRIMARY KEY, bytes bigint NOT NULL)"
    ))
    .execute(db.pool())
    .await
    .expect("create the table");

    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(Sizes {
            table: table.clone(),
        }),
    )
    .with_options(
        RunnerOptions::default()
            .batch_size(100)
            .batch_bytes(256 * 1024 * 1024)
            .lease_duration(Duration::from_millis(600)),
    );
    assert!(runner.acquire_lease().await.expect("lease"));
    let applied = runner.catch_up().await.expect("caught up");
    assert_eq!(applied, DOCUMENTS);
    let (rows, bytes): (i64, i64) =
        sqlx::query_as(&format!("SELECT count(*), sum(bytes)::bigint FROM {table}"))
            .fetch_one(db.pool())
            .await
            .expect("the sizes");
    assert_eq!(
        (rows, bytes),
        (DOCUMENTS as i64, (DOCUMENTS * 2 * 1024 * 1024) as i64)
    );
    runner.release_lease().await.expect("release");
    db.drop_schema().await;
}
