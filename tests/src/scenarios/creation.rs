//! Creating commands (`#[command(creates)]`): decided on the default state
//! without a load, and never with another outcome than a loaded decision
//! would give.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cqrs_examples::bank_account::{AccountCommand, AccountError, Deposit, OpenAccount};
use cqrskit::{
    AppendResult, CommandError, EventStore, ExpectedVersion, Metadata, NewEvent, PipelineOptions,
    ReplayRequest, ReplaySink, StoreError, StoreLayer, StoredEvent, StreamId, async_trait,
};
use uuid::Uuid;

use super::{Accounts, Store};

/// A store that counts the reads a command pipeline makes of one stream
/// (replays and stream reads) and the appends, and passes everything on.
struct Watched {
    inner: Store,
    stream_reads: AtomicUsize,
    appends: AtomicUsize,
}

impl Watched {
    fn new(inner: Store) -> Arc<Self> {
        Arc::new(Self {
            inner,
            stream_reads: AtomicUsize::new(0),
            appends: AtomicUsize::new(0),
        })
    }

    /// The (stream reads, appends) counted since the last call.
    fn take(&self) -> (usize, usize) {
        (
            self.stream_reads.swap(0, Ordering::SeqCst),
            self.appends.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl StoreLayer for Watched {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream(stream, from, limit).await
    }

    async fn replay(
        &self,
        request: ReplayRequest<'_>,
        sink: &mut dyn ReplaySink,
    ) -> Result<(), StoreError> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.replay(request, sink).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_version(stream).await
    }
}

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open(OpenAccount {
        owner: owner.into(),
    })
}

/// A creating command on a new aggregate is one append and no read, with or
/// without the state cache; on an existing aggregate (from a pipeline that
/// has not cached it) the append is refused and the command decided again
/// on the loaded state, so the caller gets the aggregate's own rejection and
/// nothing is stored. Commands that do not create still load first.
pub async fn a_creating_command_is_decided_without_a_load(store: Store) {
    let watched = Watched::new(store.clone());
    for (cache, id) in [(1024, "created"), (0, "created-uncached")] {
        let accounts = Accounts::new(watched.clone(), ())
            .with_options(PipelineOptions::default().state_cache(cache));
        let outcome = accounts.execute(id, open("A")).await.expect("open");
        assert_eq!(outcome.version, 1);
        assert_eq!(
            watched.take(),
            (0, 1),
            "opening a new account (cache {cache}) reads nothing and appends once"
        );

        let elsewhere = Accounts::new(watched.clone(), ())
            .with_options(PipelineOptions::default().state_cache(cache));
        match elsewhere.execute(id, open("B")).await {
            Err(CommandError::Rejected(AccountError::AlreadyOpen)) => {}
            other => panic!("a second opening must be the aggregate's rejection, got {other:?}"),
        }
        let (reads, appends) = watched.take();
        assert!(reads >= 1, "the refused guess is decided again on a load");
        assert_eq!(appends, 1, "only the guess was appended, and refused");
        let stored = store
            .read_stream(&Accounts::stream_id(id), 1, 10)
            .await
            .expect("read");
        assert_eq!(stored.len(), 1, "the second opening stored nothing");
        assert_eq!(
            elsewhere
                .load(id)
                .await
                .expect("load")
                .state
                .owner
                .as_deref(),
            Some("A"),
            "the first owner stays"
        );
        watched.take();
    }

    // A command that does not create is decided on the loaded state.
    let accounts = Accounts::new(watched.clone(), ());
    match accounts
        .execute(
            "never-opened",
            AccountCommand::Deposit(Deposit { amount: 1 }),
        )
        .await
    {
        Err(CommandError::Rejected(AccountError::NotOpen)) => {}
        other => panic!("a deposit on no account must be refused, got {other:?}"),
    }
    assert_eq!(watched.take(), (1, 0), "one load, no append");
}

/// Creating commands racing for one new aggregate: exactly one opens it,
/// and every other gets the aggregate's rejection (its guess refused, its
/// decision taken again on the winner's events), not a conflict.
pub async fn racing_creations_open_once_and_the_rest_are_rejected(store: Store) {
    let accounts = Arc::new(Accounts::new(store.clone(), ()));
    let mut tasks = tokio::task::JoinSet::new();
    for owner in 0..8 {
        let accounts = accounts.clone();
        tasks.spawn(async move {
            accounts
                .execute("raced-open", open(&format!("owner-{owner}")))
                .await
        });
    }
    let (mut opened, mut rejected) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("task") {
            Ok(_) => opened += 1,
            Err(CommandError::Rejected(AccountError::AlreadyOpen)) => rejected += 1,
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((opened, rejected), (1, 7));
    let stored = store
        .read_stream(&Accounts::stream_id("raced-open"), 1, 10)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1);

    // The same creation again under its command id is its first outcome,
    // whichever path finds it.
    let command = Uuid::now_v7();
    let first = accounts
        .execute_once(command, "opened-once", open("C"), Metadata::new())
        .await
        .expect("open once");
    let again = Accounts::new(store.clone(), ())
        .execute_once(command, "opened-once", open("C"), Metadata::new())
        .await
        .expect("the same command id again");
    assert!(again.already_executed);
    assert_eq!(again.version, first.version);
    assert_eq!(again.events[0].event_id, first.events[0].event_id);
}
