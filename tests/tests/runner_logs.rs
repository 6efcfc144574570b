//! What a runner tells an operator: a lease taken, taken over from a
//! runner that died, released; an event parked with the ids to find it.
//! (A test binary of its own: the log subscriber it installs is the
//! process's.)

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_examples::bank_account::BankAccount;
use cqrs_tests::ledger::{Ledger, business};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::{FailurePolicy, OnExhausted, ProjectionRunner, RunnerOptions};
use cqrskit::{Backoff, CommandPipeline};

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn lease_changes_and_parked_events_are_logged_with_their_ids() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .finish();
    tracing_subscriber::util::SubscriberInitExt::init(subscriber);

    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    business(&accounts, "acc-", 1).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(20, Ordering::SeqCst);
    let short = RunnerOptions::default()
        .lease_duration(Duration::from_millis(300))
        .failure(
            FailurePolicy::default()
                .max_attempts(3)
                .on_exhausted(OnExhausted::Park)
                .backoff(Backoff::default().initial(Duration::from_millis(1))),
        );
    let dying = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .with_options(short.clone())
        .with_owner("runner-that-dies");
    assert!(dying.acquire_lease().await.expect("lease"));
    drop(dying);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .with_options(short)
        .with_owner("runner-next");
    assert!(next.acquire_lease().await.expect("lease"));
    next.catch_up().await.expect("catch up");
    next.release_lease().await.expect("release");

    let lines = captured.lines();
    let line = |needle: &str| {
        lines
            .iter()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
            .clone()
    };
    let taken = line("lease taken projection");
    assert!(taken.contains("runner-that-dies"), "{taken}");
    let over = line("lease taken over from another runner");
    assert!(
        over.contains("owner=\"runner-next\"")
            && over.contains("previous_owner=\"runner-that-dies\""),
        "{over}"
    );
    let parked = line("event parked in the dead-letter table");
    for field in [
        "projection=\"ledger\"",
        "event_id=",
        "stream=account/acc-0",
        "position=",
        "owner=runner-next",
    ] {
        assert!(parked.contains(field), "{field} missing: {parked}");
    }
    let released = line("lease released");
    assert!(released.contains("owner=runner-next"), "{released}");
    db.drop_schema().await;
}
