//! A projection split into partitions, run by several OS processes while
//! appenders write: one killed with SIGKILL, one frozen with SIGSTOP and
//! resumed, one joining, one leaving. Every event is applied exactly once
//! and the partitions are always taken over within the lease bound.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cqrs_examples::bank_account::{BankAccount, Deposit};
use cqrs_tests::instances::Instances;
use cqrs_tests::ledger::{Ledger, business, fold};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::CommandPipeline;
use cqrskit::postgres::{Partition, PartitionedRunner, ProjectionRunner, RunnerOptions};

const LEASE_MS: u64 = 2000;
const PARTITIONS: usize = 8;

/// The bound on taking over a dead or frozen instance's partitions: its
/// leases lapse within a lease, the others count it gone within a lease
/// plus a third (their heartbeat), and take a free lease within their poll
/// interval; half a second more for a loaded machine.
fn takeover_bound() -> Duration {
    Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 500)
}

/// An instance process of the projection `ledger` split `partitions`
/// ways, its output piped.
fn instance(db: &TestStore, owner: &str, ledger: &str, partitions: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_partition_runner"));
    command
        .env("DATABASE_URL", database_url())
        .env("SCHEMA", &db.schema)
        .env("OWNER", owner)
        .env("LEASE_MS", LEASE_MS.to_string())
        .env("PARTITIONS", partitions.to_string())
        .env("LEDGER", ledger)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Each partition's current holder (an unexpired lease), by partition index.
async fn holders(db: &TestStore) -> BTreeMap<usize, String> {
    let mut held = BTreeMap::new();
    for partition in Partition::all(PARTITIONS).expect("partitions") {
        // language=SQL
        let owner: Option<String> = sqlx::query_scalar(&format!(
            "SELECT owner FROM {} WHERE name = $1 AND lease_expires_at > now()",
            db.table("projections")
        ))
        .bind(partition.row_name("ledger"))
        .fetch_optional(db.pool())
        .await
        .expect("read a lease")
        .flatten();
        if let Some(owner) = owner {
            held.insert(partition.index(), owner);
        }
    }
    held
}

/// How many partitions each owner holds.
fn shares(held: &BTreeMap<usize, String>) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for owner in held.values() {
        *shares.entry(owner.clone()).or_insert(0) += 1;
    }
    shares
}

/// Waits until `done` holds for the partitions' holders; how long it took.
async fn until(
    db: &TestStore,
    what: &str,
    within: Duration,
    done: impl Fn(&BTreeMap<usize, String>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let held = holders(db).await;
        if done(&held) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; holders {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every partition held, each by one of `owners`.
fn all_held_by(held: &BTreeMap<usize, String>, owners: &[&str]) -> bool {
    held.len() == PARTITIONS && held.values().all(|owner| owners.contains(&owner.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_between_processes_that_die_freeze_join_and_leave_applying_each_event_once()
{
    let db = TestStore::new().await;
    let accounts = Arc::new(CommandPipeline::<BankAccount>::new(db.shared(), ()));
    business(&accounts, "acc-", 40).await;
    let ledger = Ledger::create(&db, "ledger").await;

    // Deposits keep coming on every account while instances come and go.
    let writing = Arc::new(AtomicBool::new(true));
    let deposits = Arc::new(AtomicUsize::new(0));
    let appender = tokio::spawn({
        let (accounts, writing, deposits) = (accounts.clone(), writing.clone(), deposits.clone());
        async move {
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                accounts
                    .execute(&format!("acc-{}", n % 40), Deposit { amount: 1 })
                    .await
                    .expect("deposit");
                deposits.fetch_add(1, Ordering::SeqCst);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    let mut instances = Instances::default();
    for owner in ["a", "b", "c"] {
        instances.start(owner, instance(&db, owner, "ledger", PARTITIONS));
    }
    until(
        &db,
        "three instances share the partitions",
        Duration::from_secs(20),
        |held| {
            let shares = shares(held);
            held.len() == PARTITIONS
                && ["a", "b", "c"]
                    .iter()
                    .all(|owner| shares.get(*owner).is_some_and(|n| *n >= 2))
        },
    )
    .await;

    instances.signal("-KILL", "a");
    let killed = until(
        &db,
        "b and c take over a's partitions",
        takeover_bound() * 2,
        |held| all_held_by(held, &["b", "c"]),
    )
    .await;

    instances.signal("-STOP", "b");
    let frozen = until(
        &db,
        "c takes over frozen b's partitions",
        takeover_bound() * 2,
        |held| all_held_by(held, &["c"]),
    )
    .await;
    instances.signal("-CONT", "b");
    until(
        &db,
        "b, resumed, gets partitions back",
        Duration::from_secs(10),
        |held| held.len() == PARTITIONS && shares(held).get("b").is_some_and(|n| *n >= 1),
    )
    .await;

    instances.start("d", instance(&db, "d", "ledger", PARTITIONS));
    until(
        &db,
        "d, joining, gets its share",
        Duration::from_secs(10),
        |held| held.len() == PARTITIONS && shares(held).get("d").is_some_and(|n| *n >= 2),
    )
    .await;

    instances.signal("-TERM", "c");
    let left = until(
        &db,
        "b and d take over c's partitions as it leaves",
        takeover_bound() * 2,
        |held| all_held_by(held, &["b", "d"]),
    )
    .await;
    instances.wait_for_exit("c");

    writing.store(false, Ordering::SeqCst);
    appender.await.expect("the appender");
    let total = 200 + deposits.load(Ordering::SeqCst);
    cqrs_tests::scenarios::settled(&db.shared(), total).await;
    let started = Instant::now();
    while ledger.applied(db.pool()).await < i64::try_from(total).expect("a count") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "applied {} of {total}",
            ledger.applied(db.pool()).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The applied table's key refuses a second application of any event.
    assert_eq!(
        ledger.applied(db.pool()).await,
        i64::try_from(total).expect("a count")
    );
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    assert!(
        all_held_by(&holders(&db).await, &["b", "d"]),
        "every partition is held"
    );

    println!(
        "take-over with a lease of {LEASE_MS} ms: killed {killed:?}, frozen {frozen:?}, left {left:?}"
    );
    assert!(
        killed <= takeover_bound(),
        "a killed instance's partitions took {killed:?}"
    );
    assert!(
        frozen <= takeover_bound(),
        "a frozen instance's partitions took {frozen:?}"
    );
    assert!(
        left < Duration::from_millis(LEASE_MS),
        "a leaving instance's partitions took {left:?}, as long as a lapsing lease"
    );
    drop(instances);
    db.drop_schema().await;
}

fn options() -> RunnerOptions {
    RunnerOptions::default()
        .batch_size(7)
        .lease_duration(Duration::from_millis(LEASE_MS))
        .poll_interval(Duration::from_millis(50))
}

/// Each partition reads only its slices: together they apply every event
/// once, and a stream's events all go to one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_split_the_log_by_stream_and_together_apply_it_once() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    business(&accounts, "acc-", 30).await;
    cqrs_tests::scenarios::settled(&db.shared(), 150).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let partitioned = PartitionedRunner::new(db.store.clone(), ledger.clone(), 4)
        .expect("partitions")
        .with_options(options());
    let mut streams_per_partition = Vec::new();
    for runner in partitioned.partitions() {
        assert!(runner.acquire_lease().await.expect("lease"));
        let before = ledger.balances(db.pool()).await;
        let applied = runner.catch_up().await.expect("catch up");
        let after = ledger.balances(db.pool()).await;
        let touched: Vec<_> = after
            .keys()
            .filter(|account| before.get(*account) != after.get(*account))
            .cloned()
            .collect();
        assert_eq!(
            applied,
            touched.len() * 5,
            "{}: whole streams",
            runner.name()
        );
        streams_per_partition.push(touched);
    }
    assert_eq!(ledger.applied(db.pool()).await, 150);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    assert!(
        streams_per_partition
            .iter()
            .all(|streams| !streams.is_empty()),
        "30 streams spread over 4 partitions: {streams_per_partition:?}"
    );
    db.drop_schema().await;
}

/// A projection that ran unpartitioned, then split in four, then in eight,
/// each split starting from the checkpoints before it: nothing applied
/// twice, nothing skipped. A split that is not one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_is_split_at_its_checkpoint_without_applying_anything_twice() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    business(&accounts, "acc-", 10).await;
    cqrs_tests::scenarios::settled(&db.shared(), 50).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let whole = ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(options());
    assert!(whole.acquire_lease().await.expect("lease"));
    assert_eq!(whole.catch_up().await.expect("catch up"), 50);

    let four = PartitionedRunner::new(db.store.clone(), ledger.clone(), 4)
        .expect("partitions")
        .with_options(options());
    assert!(
        matches!(
            four.split_from(1).await,
            Err(cqrskit::postgres::Error::Rescale { .. })
        ),
        "refused while the whole projection's lease is held"
    );
    whole.release_lease().await.expect("release");
    four.split_from(1).await.expect("split in four");
    business(&accounts, "more-", 10).await;
    cqrs_tests::scenarios::settled(&db.shared(), 100).await;
    for runner in four.partitions() {
        assert!(runner.acquire_lease().await.expect("lease"));
        runner.catch_up().await.expect("catch up");
        runner.release_lease().await.expect("release");
    }
    assert_eq!(ledger.applied(db.pool()).await, 100);

    let three = PartitionedRunner::new(db.store.clone(), ledger.clone(), 3).expect("partitions");
    assert!(matches!(
        three.split_from(4).await,
        Err(cqrskit::postgres::Error::Rescale { .. })
    ));
    let eight = PartitionedRunner::new(db.store.clone(), ledger.clone(), 8)
        .expect("partitions")
        .with_options(options());
    eight.split_from(4).await.expect("split in eight");
    assert!(
        eight.split_from(4).await.is_err(),
        "a split that started already is not started again"
    );
    business(&accounts, "last-", 10).await;
    cqrs_tests::scenarios::settled(&db.shared(), 150).await;
    for runner in eight.partitions() {
        assert!(runner.acquire_lease().await.expect("lease"));
        runner.catch_up().await.expect("catch up");
    }
    assert_eq!(ledger.applied(db.pool()).await, 150);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

/// Waits at most 20 s for `child` to exit; its status and what it wrote to
/// stderr.
fn exit_of(mut child: Child) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
                .expect("read stderr");
            return (status, stderr);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the instance did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the ledger `ledger` has applied `total` events.
async fn applied(db: &TestStore, ledger: &Ledger, total: i64) {
    let started = Instant::now();
    while ledger.applied(db.pool()).await < total {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "applied {} of {total}",
            ledger.applied(db.pool()).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A projection running in 4 partitions, caught up on 240 events: an
/// instance started with 8 partitions, and an unpartitioned runner of it,
/// refuse to start with an error naming the way out (and an unpartitioned
/// projection refuses a partitioned runner); two instances started at the
/// same instant with different counts on a fresh projection: one runs, the
/// other refuses; after a split to 8, an instance of the old split refuses
/// and one of the new split goes on. Every event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_with_another_partition_count_refuse_to_start() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    business(&accounts, "acc-", 48).await;
    cqrs_tests::scenarios::settled(&db.shared(), 240).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let mut instances = Instances::default();
    instances.start("four", instance(&db, "four", "ledger", 4));
    applied(&db, &ledger, 240).await;

    let (status, stderr) = exit_of(instance(&db, "eight", "ledger", 8).spawn().expect("start"));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("runs in 4 partition(s)") && stderr.contains("split_from(4)"),
        "{stderr}"
    );
    let whole = ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(options());
    let refused = whole.acquire_lease().await.expect_err("refused");
    assert!(
        matches!(
            refused,
            cqrskit::postgres::Error::PartitionsDisagree {
                recorded: 4,
                configured: 1,
                ..
            }
        ),
        "{refused}"
    );
    assert!(whole.catch_up().await.is_err(), "and applies nothing");

    // The reverse: an unpartitioned projection refuses a partitioned runner.
    let single = Arc::new(Ledger::create(&db, "single").await);
    let whole = ProjectionRunner::new(db.store.clone(), single.clone()).with_options(options());
    assert!(whole.acquire_lease().await.expect("lease"));
    assert_eq!(whole.catch_up().await.expect("catch up"), 240);
    whole.release_lease().await.expect("release");
    let split = PartitionedRunner::new(db.store.clone(), single.clone(), 2)
        .expect("partitions")
        .with_options(options());
    assert!(matches!(
        split.partitions()[0].acquire_lease().await,
        Err(cqrskit::postgres::Error::PartitionsDisagree {
            recorded: 1,
            configured: 2,
            ..
        })
    ));
    assert_eq!(single.applied(db.pool()).await, 240);

    // Two instances with different counts at the same instant, on a
    // projection that never ran: one records its count and runs.
    let racing = Ledger::create(&db, "racing").await;
    let two = instance(&db, "two", "racing", 2).spawn().expect("start");
    let three = instance(&db, "three", "racing", 3).spawn().expect("start");
    applied(&db, &racing, 240).await;
    let mut exits = Vec::new();
    for (name, mut child) in [("two", two), ("three", three)] {
        std::thread::sleep(Duration::from_millis(500));
        match child.try_wait().expect("wait") {
            Some(_) => exits.push((name, exit_of(child))),
            None => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    assert_eq!(exits.len(), 1, "exactly one refused: {exits:?}");
    assert!(exits[0].1.1.contains("refuses to start"), "{exits:?}");
    assert_eq!(racing.applied(db.pool()).await, 240);

    // A split to 8 with the instance stopped; then an instance of the old
    // split (an old version restarted) refuses, and the new one goes on.
    instances.signal("-TERM", "four");
    instances.wait_for_exit("four");
    let eight = PartitionedRunner::new(db.store.clone(), ledger.clone(), 8)
        .expect("partitions")
        .with_options(options());
    eight.split_from(4).await.expect("split in eight");
    let (status, stderr) = exit_of(instance(&db, "old", "ledger", 4).spawn().expect("start"));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("runs in 8 partition(s)"), "{stderr}");
    business(&accounts, "more-", 8).await;
    cqrs_tests::scenarios::settled(&db.shared(), 280).await;
    instances.start("new", instance(&db, "new", "ledger", 8));
    applied(&db, &ledger, 280).await;
    assert_eq!(ledger.applied(db.pool()).await, 280);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    drop(instances);
    db.drop_schema().await;
}

/// A split is refused while the old split has open dead letters: they
/// would be left under rows no runner reads, and the streams they hold
/// back (`OnExhausted::ParkStream`) let go. Once they are replayed, the
/// split goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_waits_for_the_old_splits_dead_letters() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    business(&accounts, "acc-", 4).await;
    accounts
        .execute("acc-0", Deposit { amount: 666 })
        .await
        .expect("deposit");
    cqrs_tests::scenarios::settled(&db.shared(), 21).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let parking = options().failure(
        cqrskit::postgres::FailurePolicy::default()
            .max_attempts(1)
            .on_exhausted(cqrskit::postgres::OnExhausted::ParkStream),
    );
    let whole = ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(parking);
    assert!(whole.acquire_lease().await.expect("lease"));
    whole.catch_up().await.expect("catch up");
    whole.release_lease().await.expect("release");
    assert_eq!(whole.dead_letters().await.expect("dead letters").len(), 1);

    let two = PartitionedRunner::new(db.store.clone(), ledger.clone(), 2).expect("partitions");
    let refused = two.split_from(1).await.expect_err("refused");
    assert!(
        refused.to_string().contains("open dead letter"),
        "{refused}"
    );

    ledger.poison.store(0, Ordering::SeqCst);
    assert_eq!(
        whole.replay_dead_letters().await.expect("replay").resolved,
        1
    );
    two.split_from(1).await.expect("split once nothing is open");
    db.drop_schema().await;
}
