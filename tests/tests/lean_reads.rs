//! A projector that does not read metadata gets the log read without it;
//! one that does gets every event's metadata, from the same log.

use std::sync::{Arc, Mutex};

use cqrs_examples::bank_account::{AccountEvent, BankAccount};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::ProjectionRunner;
use cqrskit::postgres::testing::caught_up;
use cqrskit::{BoxError, CommandPipeline, EventEnvelope, Metadata, Projector, async_trait};
use sqlx::PgConnection;

/// Records the metadata of every event it is given.
struct Seen {
    name: &'static str,
    reads_metadata: bool,
    seen: Mutex<Vec<(uuid::Uuid, Metadata)>>,
}

#[async_trait]
impl Projector<PgConnection> for Seen {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        self.name
    }

    fn reads_metadata(&self) -> bool {
        self.reads_metadata
    }

    async fn project(
        &self,
        event: &EventEnvelope<AccountEvent>,
        _: &mut PgConnection,
    ) -> Result<(), BoxError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.push((event.event_id, event.metadata.clone()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_read_without_metadata_for_a_projector_that_does_not_read_it() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    cqrs_tests::ledger::business(&accounts, "acc-", 3).await;
    let projector = |name, reads_metadata| {
        Arc::new(Seen {
            name,
            reads_metadata,
            seen: Mutex::new(Vec::new()),
        })
    };
    let full = projector("full", true);
    let lean = projector("lean", false);
    caught_up(&ProjectionRunner::new(db.store.clone(), full.clone())).await;
    caught_up(&ProjectionRunner::new(db.store.clone(), lean.clone())).await;

    let full = full.seen.lock().expect("lock").clone();
    let lean = lean.seen.lock().expect("lock").clone();
    assert_eq!(full.len(), 15);
    let ids = |seen: &[(uuid::Uuid, Metadata)]| seen.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&full), ids(&lean), "the same events, in the same order");
    assert!(
        full.iter()
            .all(|(_, metadata)| metadata.correlation_id.is_some()),
        "the pipeline gives every event a correlation id"
    );
    assert!(
        lean.iter()
            .all(|(_, metadata)| *metadata == Metadata::default()),
        "left out of the read"
    );
    db.drop_schema().await;
}
