//! The projection runner against PostgreSQL: exactly-once read models across
//! failures, crashes and competing runners; parking and stopping at poison
//! events; rebuilds; live tailing woken by NOTIFY.
//!
//! One module per concern; the helpers they share are here.

mod documents;
mod exactly_once;
mod host;
mod live;
mod poison;
mod read_ahead;
mod rebuild;
mod windows;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::ledger::{Ledger, business, fold};
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::{Error, FailurePolicy, OnExhausted, ProjectionRunner, RunnerOptions};
use cqrskit::{Backoff, CommandPipeline, EventStore, Position};

type Accounts = CommandPipeline<BankAccount>;

fn accounts(db: &TestStore) -> Accounts {
    Accounts::new(db.shared(), ())
}

fn options(failure: OnExhausted) -> RunnerOptions {
    RunnerOptions::default()
        .batch_size(7)
        .lease_duration(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(100))
        .failure(
            FailurePolicy::default()
                .max_attempts(3)
                .on_exhausted(failure)
                .backoff(
                    Backoff::default()
                        .initial(Duration::from_millis(1))
                        .max(Duration::from_millis(5)),
                ),
        )
}

fn runner(db: &TestStore, ledger: &Arc<Ledger>, failure: OnExhausted) -> ProjectionRunner<Ledger> {
    ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(options(failure))
}

/// Waits until the log shows every event written so far to readers.
async fn settle(db: &TestStore, events: usize) {
    cqrs_tests::scenarios::settled(&db.shared(), events).await;
}

/// Two writers of one read model at once: `first` is applied in a
/// transaction left open, then `second` in another, from a task. Returns
/// whether the second was still waiting on the first 200 ms later, and how
/// it ended once the first committed (committed when it succeeded, rolled
/// back when it failed).
async fn race<P>(
    db: &TestStore,
    projector: &Arc<P>,
    first: Vec<cqrskit::EventEnvelope<P::Event>>,
    second: Vec<cqrskit::EventEnvelope<P::Event>>,
) -> (bool, Result<(), String>)
where
    P: cqrskit::Projector<sqlx::PgConnection> + 'static,
{
    let mut first_tx = db.pool().begin().await.expect("begin");
    projector
        .project_batch(&first, &mut first_tx)
        .await
        .expect("the first writer applies");
    let second = tokio::spawn({
        let projector = projector.clone();
        let pool = db.pool().clone();
        async move {
            let mut tx = pool.begin().await.expect("begin");
            match projector.project_batch(&second, &mut tx).await {
                Ok(()) => {
                    tx.commit().await.expect("commit");
                    Ok(())
                }
                Err(error) => {
                    // Explicitly: a dropped transaction rolls back only
                    // when its connection is next used.
                    tx.rollback().await.expect("rollback");
                    Err(error.to_string())
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waited = !second.is_finished();
    first_tx.commit().await.expect("commit");
    (waited, second.await.expect("joined"))
}
