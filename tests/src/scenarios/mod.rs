//! The scenarios: each takes a fresh, empty store and panics when the store
//! breaks the [`EventStore`] contract.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_examples::bank_account::{
    AccountCommand, AccountError, AccountEvent, AccountOpened, BankAccount, Deposit, DepositMade,
    OpenAccount, Withdraw, WithdrawalMade,
};
use cqrskit::{
    Aggregate, BoxError, CommandError, CommandPipeline, Conflict, DomainEvent, EventEnvelope,
    EventQueries, EventStore, ExpectedVersion, LogFilter, Metadata, PipelineOptions, Position,
    RetryPolicy, Snapshot, SnapshotPolicy, SnapshotStore, StoreError, StoreLayer, catch_up,
    projector,
};
use uuid::Uuid;

use crate::fixtures::{event, json, stream, ticks};

mod appends;
mod commands;
mod consistency;
mod creation;
mod idempotent_commands;
mod late_commit;
mod projectors;
mod reads;
mod round_trip;
mod snapshots;

pub use appends::*;
pub use commands::*;
pub use consistency::*;
pub use creation::*;
pub use idempotent_commands::*;
pub use late_commit::*;
pub use projectors::*;
pub use reads::*;
pub use round_trip::*;
pub use snapshots::*;

/// A store as the scenarios receive it.
pub type Store = Arc<dyn EventStore>;

/// The bank-account pipeline the scenarios drive.
pub type Accounts = CommandPipeline<BankAccount>;

/// The store's snapshots: every store under the suite keeps them.
fn snapshots(store: &Store) -> &dyn SnapshotStore {
    store.snapshots().expect("the store keeps snapshots")
}

/// The store's lookups for tools: every store under the suite answers them.
fn queries(store: &Store) -> &dyn EventQueries {
    store.queries().expect("the store answers queries")
}

/// Waits until the global log shows `expected` events in all.
///
/// A store may show a committed event to log readers only once every
/// transaction older than its own has ended (that is how PostgreSQL keeps
/// tailing gap-safe), so a scenario that reads the log right after writing
/// waits for it to settle first.
pub async fn settled(store: &Store, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let visible = store
            .read_log(Position::START, &LogFilter::all(), expected + 1)
            .await
            .expect("read the log")
            .len();
        if visible >= expected {
            assert_eq!(visible, expected, "more events in the log than written");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log shows {visible} of {expected} events after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Parses JSON text for comparison by value: stores may reformat it.
fn value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("stored JSON parses")
}

/// Opens account `id` for owner "A" and deposits each amount in turn.
pub async fn open_with_deposits(accounts: &Accounts, id: &str, amounts: &[u64]) {
    accounts
        .execute(id, AccountCommand::Open(OpenAccount { owner: "A".into() }))
        .await
        .expect("open");
    for &amount in amounts {
        accounts
            .execute(id, AccountCommand::Deposit(Deposit { amount }))
            .await
            .expect("deposit");
    }
}

fn fold(events: &[AccountEvent]) -> BankAccount {
    let mut state = BankAccount::default();
    for event in events {
        state.apply(event);
    }
    state
}

async fn stored_account_events(store: &Store, id: &str) -> Vec<AccountEvent> {
    store
        .read_stream(&Accounts::stream_id(id), 1, 10_000)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.decode::<AccountEvent>().expect("decode").payload)
        .collect()
}
