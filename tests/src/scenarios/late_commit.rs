//! An execution whose answer was lost while its commit was still on its
//! way: the retry must not decide again on a state that already holds it.

use std::sync::Mutex;

use cqrskit::{
    AppendResult, ExpectedVersion, NewEvent, ReplayRequest, ReplaySink, StoredEvent, StreamId,
    async_trait,
};

use super::*;

/// The append held back by [`LateCommit`].
type Held = (StreamId, ExpectedVersion, Vec<NewEvent>);

/// A store whose next append, once asked for, answers that its outcome is
/// unknown and commits later: right after the next check for it by event
/// id, as a `COMMIT` still running on the server lands between a retry's
/// check and its decision.
struct LateCommit {
    inner: Store,
    hold_next: std::sync::atomic::AtomicBool,
    held: Mutex<Option<Held>>,
    checked: std::sync::atomic::AtomicBool,
}

impl LateCommit {
    fn new(inner: Store) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hold_next: std::sync::atomic::AtomicBool::new(false),
            held: Mutex::new(None),
            checked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Commits the held append once its retry has checked for it.
    async fn land(&self) {
        if !self.checked.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let held = self.held.lock().expect("lock").take();
        if let Some((stream, expected, events)) = held {
            self.inner
                .append(&stream, expected, events)
                .await
                .expect("the late commit");
        }
    }
}

#[async_trait]
impl StoreLayer for LateCommit {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if self
            .hold_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            *self.held.lock().expect("lock") = Some((stream.clone(), expected, events));
            return Err(StoreError::OutcomeUnknown(
                "the answer to COMMIT was lost (held by the test)".into(),
            ));
        }
        self.land().await;
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.land().await;
        self.inner.read_stream(stream, from, limit).await
    }

    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        self.land().await;
        self.inner.replay(request, sink).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.land().await;
        self.inner.stream_version(stream).await
    }

    async fn event_by_id(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let found = self.inner.event_by_id(event_id).await;
        if self.held.lock().expect("lock").is_some() {
            self.checked
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        found
    }
}

/// A withdrawal of 60 from 100 whose answer is lost while its commit is
/// still on its way; the caller executes the same command id again. The
/// retry's check finds nothing yet, then the first commit lands, and
/// deciding again on the new balance (40) would refuse the withdrawal:
/// the retry reports the first execution instead, and the withdrawal is
/// stored once.
pub async fn a_retry_after_a_lost_answer_reports_the_late_commit_not_a_rejection(store: Store) {
    let late = LateCommit::new(store);
    let accounts = Accounts::new(late.clone(), ());
    accounts
        .execute(
            "acc",
            OpenAccount {
                owner: "Ada".into(),
            },
        )
        .await
        .expect("open");
    accounts
        .execute("acc", Deposit { amount: 100 })
        .await
        .expect("deposit");
    let command_id = Uuid::now_v7();
    late.hold_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let lost = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await;
    assert!(
        matches!(lost, Err(CommandError::OutcomeUnknown { .. })),
        "{lost:?}"
    );
    let again = accounts
        .execute_once(command_id, "acc", Withdraw { amount: 60 }, Metadata::new())
        .await
        .expect("the first execution's outcome, not a rejection");
    assert!(again.already_executed);
    assert_eq!(again.version, 3);
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!(
        (loaded.version, loaded.state.balance),
        (3, 40),
        "stored once"
    );
}
