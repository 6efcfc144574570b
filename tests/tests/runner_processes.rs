//! Runners in processes of their own, frozen and killed with real signals.
//!
//! A lease holder frozen with SIGSTOP in the middle of a batch holds the
//! projection's row lock and a transaction id that stalls every reader of
//! the log; the server must end its transaction within the runner's bound
//! (a third of the lease) so that another runner takes over, and the frozen
//! one, woken, must find itself fenced.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrs_tests::ledger::{Ledger, fold};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::CommandPipeline;

const LEASE_MS: u64 = 2000;
const DEPOSIT: u64 = 7;

/// Runner processes, killed with SIGKILL (after a SIGCONT) when dropped, so
/// a failing test leaves none behind.
struct Runners(Vec<Child>);

impl Runners {
    fn start(&mut self, db: &TestStore, owner: &str) -> u32 {
        let child = Command::new(env!("CARGO_BIN_EXE_projection_runner"))
            .env("DATABASE_URL", database_url())
            .env("SCHEMA", &db.schema)
            .env("OWNER", owner)
            .env("LEASE_MS", LEASE_MS.to_string())
            .env("SLOW_AMOUNT", DEPOSIT.to_string())
            .env("SLOW_MS", "120")
            .stdout(Stdio::null())
            .spawn()
            .expect("start a runner process");
        let pid = child.id();
        self.0.push(child);
        pid
    }
}

impl Drop for Runners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            signal("-CONT", child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}");
}

/// The session states of a runner's connections.
async fn states(db: &TestStore, owner: &str) -> Vec<String> {
    // language=SQL
    sqlx::query_scalar(
        "SELECT coalesce(state, '') FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(owner)
    .fetch_all(db.pool())
    .await
    .expect("read pg_stat_activity")
}

async fn lease_owner(db: &TestStore) -> Option<String> {
    // language=SQL
    sqlx::query_scalar(&format!(
        "SELECT owner FROM {} WHERE name = 'ledger'",
        db.table("projections")
    ))
    .fetch_optional(db.pool())
    .await
    .expect("read the lease")
    .flatten()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_frozen_mid_batch_is_taken_over_within_the_lease_and_finds_itself_fenced() {
    let db = TestStore::new().await;
    let ledger = Ledger::create(&db, "ledger").await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    for n in 0..4 {
        let id = format!("acc-{n}");
        accounts
            .execute(&id, OpenAccount { owner: id.clone() })
            .await
            .expect("open");
        for _ in 0..10 {
            accounts
                .execute(&id, Deposit { amount: DEPOSIT })
                .await
                .expect("deposit");
        }
    }
    let total = 44;
    let mut runners = Runners(Vec::new());
    let frozen = runners.start(&db, "runner-a");
    wait_until(
        "runner-a takes the lease",
        Duration::from_secs(20),
        || async { lease_owner(&db).await.as_deref() == Some("runner-a") },
    )
    .await;
    runners.start(&db, "runner-b");

    // Freeze runner-a while it sits in a batch's transaction (its projector
    // pauses on every deposit, so that is most of the time).
    wait_until(
        "runner-a is frozen inside a transaction",
        Duration::from_secs(20),
        || async {
            signal("-STOP", frozen);
            tokio::time::sleep(Duration::from_millis(30)).await;
            if states(&db, "runner-a")
                .await
                .iter()
                .any(|s| s == "idle in transaction")
            {
                return true;
            }
            signal("-CONT", frozen);
            tokio::time::sleep(Duration::from_millis(50)).await;
            false
        },
    )
    .await;
    let frozen_at = tokio::time::Instant::now();
    let applied_when_frozen = ledger.applied(db.pool()).await;
    assert!(
        applied_when_frozen < total,
        "runner-a finished before it froze"
    );

    // The server ends the frozen transaction; runner-b takes the lease over
    // and applies the rest, exactly once.
    wait_until("runner-b takes over", Duration::from_secs(15), || async {
        lease_owner(&db).await.as_deref() == Some("runner-b")
    })
    .await;
    let takeover = frozen_at.elapsed();
    wait_until("every event applied", Duration::from_secs(30), || async {
        ledger.applied(db.pool()).await == total
    })
    .await;
    assert!(
        takeover < Duration::from_millis(LEASE_MS * 3),
        "takeover took {takeover:?} with a lease of {LEASE_MS} ms"
    );
    assert!(
        states(&db, "runner-a")
            .await
            .iter()
            .all(|s| s != "idle in transaction"),
        "the frozen runner's transaction was ended by the server"
    );

    // Woken, runner-a is fenced: nothing is applied twice, the lease stays.
    signal("-CONT", frozen);
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    assert_eq!(ledger.applied(db.pool()).await, total);
    assert_eq!(lease_owner(&db).await.as_deref(), Some("runner-b"));
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    drop(runners);
    db.drop_schema().await;
}
