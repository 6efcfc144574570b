//! The store behind PgBouncer in transaction pooling mode, as
//! `docs/postgres.md` says it works: every test starts a private PgBouncer
//! ([`cqrs_tests::pgbouncer`]) with a small server pool, so that clients share
//! server connections between transactions, and uses the store through it as
//! an application would: `PostgresEventStore::connect(<pooled url>)`.
//!
//! The schemas are created and migrated through the direct URL; everything
//! under test goes through the pooler.
//!
//! The store is told it is behind such a pooler
//! (`PostgresEventStore::connect_through_pooler`): why that is needed, and what
//! it changes, is in `cqrs-postgres/src/database.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrs_tests::fixtures::{stream, ticks};
use cqrs_tests::ledger::{Ledger, business, fold};
use cqrs_tests::pgbouncer::PgBouncer;
use cqrs_tests::postgres::TestStore;
use cqrskit::Backoff;
use cqrskit::postgres::sqlx;
use cqrskit::postgres::sqlx::postgres::PgListener;
use cqrskit::postgres::{
    FailurePolicy, OnExhausted, PostgresEventStore, ProjectionRunner, RunnerOptions, StoreOptions,
};
use cqrskit::{CommandPipeline, EventStore, ExpectedVersion, LogFilter, Position};
use uuid::Uuid;

type Accounts = CommandPipeline<BankAccount>;

/// Concurrent clients in the mixed workloads: twice the pooler's server pool.
const TASKS: usize = 8;
/// Operations per client.
const OPERATIONS: usize = 50;

/// The store in `db`'s schema, through the pooler, connected as a user would.
async fn pooled_store(bouncer: &PgBouncer, db: &TestStore) -> PostgresEventStore {
    let url = bouncer.url("postgres");
    PostgresEventStore::connect_through_pooler(&url, None)
        .await
        .unwrap_or_else(|error| panic!("connect through PgBouncer at {url}: {error}"))
        .with_schema(&db.schema)
        .expect("a valid schema")
}

/// The failed operations of a workload, by kind, with their errors.
#[derive(Default)]
struct Failures {
    attempted: usize,
    failed: Vec<(&'static str, String)>,
}

impl Failures {
    fn record<T, E: std::error::Error>(
        &mut self,
        kind: &'static str,
        result: Result<T, E>,
    ) -> Option<T> {
        self.attempted += 1;
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed.push((kind, chain(&error)));
                None
            }
        }
    }

    fn wrong(&mut self, kind: &'static str, what: String) {
        self.failed.push((kind, what));
    }

    fn merge(&mut self, other: Self) {
        self.attempted += other.attempted;
        self.failed.extend(other.failed);
    }

    /// Panics, summing the failures up, unless there are none.
    fn assert_none(&self, what: &str, bouncer: &PgBouncer) {
        if self.failed.is_empty() {
            return;
        }
        let mut by_kind = BTreeMap::<&str, usize>::new();
        let mut by_error = BTreeMap::<String, usize>::new();
        for (kind, error) in &self.failed {
            *by_kind.entry(kind).or_default() += 1;
            *by_error.entry(shape(error)).or_default() += 1;
        }
        let mut report = format!(
            "{what}: {} of {} operations failed through PgBouncer (transaction mode)\nby operation: {by_kind:?}\nerrors:\n",
            self.failed.len(),
            self.attempted
        );
        for (error, count) in &by_error {
            let _ = writeln!(report, "  {count:>4} x {error}");
        }
        let _ = write!(
            report,
            "PgBouncer's log ends with:\n{}",
            bouncer.log_tail(5)
        );
        panic!("{report}");
    }
}

/// An error and its sources, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// An error message with its numbers blurred, to group alike errors.
fn shape(error: &str) -> String {
    let mut shaped = String::new();
    let mut in_number = false;
    for c in error.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                shaped.push('N');
            }
            in_number = true;
        } else {
            shaped.push(c);
            in_number = false;
        }
    }
    shaped
}

/// What one client of the mixed workload got done.
#[derive(Default)]
struct Done {
    ticks: u64,
    opened: bool,
    deposited: u64,
    account_events: u64,
}

/// One client: `OPERATIONS` operations on its own stream and account, mixing
/// appends, stream reads, versions, log reads and commands.
async fn client(store: Arc<dyn EventStore>, task: usize) -> (Done, Failures) {
    let accounts = Accounts::new(store.clone(), ());
    let own = stream(&format!("pooled-{task}"));
    let account = format!("acct-{task}");
    let mut done = Done::default();
    let mut failures = Failures::default();
    for op in 0..OPERATIONS {
        match op % 5 {
            0 => {
                let count = 1 + op % 3;
                let appended = store.append(&own, ExpectedVersion::Any, ticks(count)).await;
                if failures.record("append", appended).is_some() {
                    done.ticks += count as u64;
                }
            }
            1 => {
                let read = store.read_stream(&own, 1, 1000).await;
                if let Some(events) = failures.record("read_stream", read) {
                    if events.len() as u64 != done.ticks {
                        failures.wrong(
                            "read_stream",
                            format!("read {} events of {}", events.len(), done.ticks),
                        );
                    }
                }
            }
            2 => {
                let version = store.stream_version(&own).await;
                if let Some(version) = failures.record("stream_version", version) {
                    if version != done.ticks {
                        failures.wrong(
                            "stream_version",
                            format!("version {version}, appended {}", done.ticks),
                        );
                    }
                }
            }
            3 => {
                let log = store.read_log(Position::START, &LogFilter::all(), 50).await;
                failures.record("read_log", log);
            }
            _ => {
                if done.opened {
                    let amount = op as u64 + 1;
                    let deposited = accounts.execute(&account, Deposit { amount }).await;
                    if failures.record("command", deposited).is_some() {
                        done.deposited += amount;
                        done.account_events += 1;
                    }
                } else {
                    let opened = accounts
                        .execute(
                            &account,
                            OpenAccount {
                                owner: account.clone(),
                            },
                        )
                        .await;
                    if failures.record("command", opened).is_some() {
                        done.opened = true;
                        done.account_events += 1;
                    }
                }
            }
        }
    }
    (done, failures)
}

/// Runs `TASKS` clients at once on `store`; returns what each got done and
/// every failure.
async fn mixed_workload(store: Arc<dyn EventStore>) -> (Vec<Done>, Failures) {
    let clients = (0..TASKS)
        .map(|task| tokio::spawn(client(store.clone(), task)))
        .collect::<Vec<_>>();
    let mut all_done = Vec::new();
    let mut failures = Failures::default();
    for client in clients {
        let (done, failed) = client.await.expect("client task");
        all_done.push(done);
        failures.merge(failed);
    }
    (all_done, failures)
}

/// Checks through the direct connection that the store holds exactly what
/// the clients were told was stored.
async fn assert_stored(db: &TestStore, done: &[Done]) {
    let direct = db.shared();
    let accounts = Accounts::new(direct.clone(), ());
    for (task, done) in done.iter().enumerate() {
        let own = stream(&format!("pooled-{task}"));
        assert_eq!(
            direct.stream_version(&own).await.expect("version"),
            done.ticks,
            "events in stream {own:?}"
        );
        let loaded = accounts
            .load(&format!("acct-{task}"))
            .await
            .expect("load the account");
        assert_eq!(
            (loaded.version, loaded.state.balance),
            (done.account_events, done.deposited),
            "account acct-{task}"
        );
    }
    let total = done
        .iter()
        .map(|done| done.ticks + done.account_events)
        .sum::<u64>();
    cqrs_tests::scenarios::settled(&direct, total as usize).await;
}

/// The options of the runners behind the pooler: small batches, quick
/// polls, three quick attempts and then a stop, and a lease of `lease`.
fn pooled_options(lease: Duration) -> RunnerOptions {
    RunnerOptions::default()
        .batch_size(7)
        .lease_duration(lease)
        .poll_interval(Duration::from_millis(500))
        .failure(
            FailurePolicy::default()
                .max_attempts(3)
                .on_exhausted(OnExhausted::Stop)
                .backoff(
                    Backoff::default()
                        .initial(Duration::from_millis(1))
                        .max(Duration::from_millis(5)),
                ),
        )
}

/// Test A: every operation of concurrent clients succeeds through the pooler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_reads_and_commands_all_succeed_through_a_transaction_pooler() {
    let bouncer = PgBouncer::start();
    let db = TestStore::new().await;
    let store: Arc<dyn EventStore> = Arc::new(pooled_store(&bouncer, &db).await);

    let (done, failures) = mixed_workload(store).await;
    failures.assert_none("mixed workload", &bouncer);
    assert_stored(&db, &done).await;
    db.drop_schema().await;
}

/// Test A with group commit: the group writer's statements and commits go
/// through the pooler too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_through_a_transaction_pooler_loses_and_fails_nothing() {
    let bouncer = PgBouncer::start();
    let db = TestStore::new().await;
    let store = pooled_store(&bouncer, &db)
        .await
        .with_options(StoreOptions::default());
    let (done, failures) = mixed_workload(Arc::new(store)).await;
    failures.assert_none("mixed workload with group commit", &bouncer);
    assert_stored(&db, &done).await;
    db.drop_schema().await;
}

/// Test B: a runner whose store goes through the pooler applies every event
/// that writers append, within a bounded time, and stops cleanly (releasing
/// its lease) when asked. `LISTEN` cannot work through a transaction pooler
/// (its session is not kept), so the runner must notice new events by
/// polling. The writers write through the direct URL, so that only the
/// runner's own statements go through the pooler. Five rounds of start,
/// write, apply, stop: each stop is a chance for the lease's release to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_behind_a_transaction_pooler_applies_every_event() {
    const ROUNDS: usize = 5;
    const EVENTS_PER_ROUND: i64 = 3 * 5;
    let bouncer = PgBouncer::start();
    let db = TestStore::new().await;
    let pooled = pooled_store(&bouncer, &db).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = Arc::new(
        ProjectionRunner::new(pooled, ledger.clone())
            .with_options(pooled_options(Duration::from_secs(5))),
    );
    let accounts = Accounts::new(db.shared(), ());
    let mut unclean_stops = Vec::new();
    for round in 0..ROUNDS {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let runner = runner.clone();
            async move {
                runner
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        business(&accounts, &format!("r{round}-"), 3).await;

        let expected = EVENTS_PER_ROUND * (round as i64 + 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let applied = ledger.applied(db.pool()).await;
            if applied == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the runner behind PgBouncer applied {applied} of {expected} \
                 events in 30 s (poll interval 500 ms); PgBouncer's log ends with:\n{}",
                bouncer.log_tail(5)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        if let Err(error) = running.await.expect("runner task") {
            unclean_stops.push(format!("round {round}: {}", chain(&error)));
        }
    }
    assert!(
        unclean_stops.is_empty(),
        "{} of {ROUNDS} runs behind PgBouncer did not end cleanly:\n{}",
        unclean_stops.len(),
        unclean_stops.join("\n")
    );
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

/// Test B, step by step: each of the runner's own calls (lease, batches,
/// checkpoint, lag) through the pooler succeeds while writers append (through
/// the direct URL, as in test B). `run` retries failures quietly, so only
/// these calls show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_behind_a_transaction_pooler_catches_up_without_errors() {
    let bouncer = PgBouncer::start();
    let db = TestStore::new().await;
    let pooled = pooled_store(&bouncer, &db).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = ProjectionRunner::new(pooled, ledger.clone())
        .with_options(pooled_options(Duration::from_secs(30)));

    let accounts = Arc::new(Accounts::new(db.shared(), ()));
    let writers = (0..4)
        .map(|writer| {
            let accounts = accounts.clone();
            tokio::spawn(async move { business(&accounts, &format!("w{writer}-"), 3).await })
        })
        .collect::<Vec<_>>();

    let mut failures = Failures::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut leased = false;
    while tokio::time::Instant::now() < deadline && failures.failed.len() < 50 {
        if !leased {
            let acquired = runner.acquire_lease().await;
            leased = failures.record("acquire_lease", acquired).unwrap_or(false);
            continue;
        }
        let caught_up = runner.catch_up().await;
        failures.record("catch_up", caught_up);
        let checkpoint = runner.checkpoint().await;
        failures.record("checkpoint", checkpoint);
        let lag = runner.lag().await;
        let lag = failures.record("lag", lag);
        let writing = writers.iter().any(|writer| !writer.is_finished());
        if !writing && lag.is_some_and(|lag| lag.events == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for writer in writers {
        writer.await.expect("writer (direct)");
    }
    failures.assert_none("runner calls", &bouncer);
    assert_eq!(ledger.applied(db.pool()).await, 60);
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}

/// What the runner has to live with: `LISTEN` through a transaction pooler is
/// accepted, but the session it was registered on goes back to the pool at
/// once, so notifications never arrive. A direct listener gets the same
/// notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_through_a_transaction_pooler_is_accepted_but_never_delivers() {
    let bouncer = PgBouncer::start();
    let channel = format!("pooler_probe_{}", Uuid::now_v7().simple());
    let mut pooled = PgListener::connect(&bouncer.url("postgres"))
        .await
        .expect("connect a listener through PgBouncer");
    pooled
        .listen(&channel)
        .await
        .expect("LISTEN through PgBouncer is accepted");
    let mut direct = PgListener::connect(&cqrs_tests::postgres::database_url())
        .await
        .expect("connect a direct listener");
    direct.listen(&channel).await.expect("LISTEN directly");

    let pool = cqrs_tests::postgres::pool().await;
    sqlx::query("SELECT pg_notify($1, 'probe')")
        .bind(&channel)
        .execute(&pool)
        .await
        .expect("NOTIFY");

    let received = tokio::time::timeout(Duration::from_secs(5), direct.recv())
        .await
        .expect("the direct listener is notified within 5 s")
        .expect("a notification");
    assert_eq!(received.payload(), "probe");
    let through_pooler = tokio::time::timeout(Duration::from_secs(3), pooled.recv()).await;
    assert!(
        through_pooler.is_err(),
        "a listener through PgBouncer in transaction mode got {through_pooler:?}: \
         LISTEN works through this pooler, the runner could rely on it"
    );
}

/// With the direct URL beside the pooled one (what managed PostgreSQL
/// offerings give), what needs a session goes direct: `migrate()` works, and
/// a runner is woken by `NOTIFY` instead of waiting for its poll. Without
/// it, `migrate()` refuses with a clear error rather than taking an advisory
/// lock through the pooler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_direct_url_migrations_and_notifications_work_behind_a_pooler() {
    let bouncer = PgBouncer::start();
    let schema = format!("test_pooler_{}", Uuid::now_v7().simple());
    let pooled_url = bouncer.url("postgres");
    let without_direct = PostgresEventStore::connect_through_pooler(&pooled_url, None)
        .await
        .expect("connect through the pooler")
        .with_schema(&schema)
        .expect("schema");
    match without_direct.migrate().await {
        Err(cqrskit::postgres::Error::SessionRequired(what)) => assert_eq!(what, "migrate"),
        other => panic!("migrating through a transaction pooler must be refused, got {other:?}"),
    }
    // Reading where the schema stands needs no session of its own, even
    // where its record is missing (a refused statement in the pooler's
    // transaction).
    let unmigrated = without_direct.schema_status().await.expect("status");
    assert!(unmigrated.applied.is_empty() && !unmigrated.pending.is_empty());

    let direct_url = cqrs_tests::postgres::database_url();
    let store = PostgresEventStore::connect_through_pooler(&pooled_url, Some(&direct_url))
        .await
        .expect("connect through the pooler")
        .with_schema(&schema)
        .expect("schema");
    store
        .migrate()
        .await
        .expect("migrations through the direct URL");
    without_direct
        .verify_schema()
        .await
        .expect("current, read through the pooler");
    let nobody = cqrskit::StreamId::new("account", "nobody");
    let version = without_direct.stream_version(&nobody).await;
    assert_eq!(version.expect("the pooled sessions are usable"), 0);
    // The test's own reads go direct.
    let db = TestStore::from(cqrskit::postgres::testing::TestStore {
        store: PostgresEventStore::from_pool(cqrs_tests::postgres::pool().await)
            .with_schema(&schema)
            .expect("schema"),
        schema: schema.clone(),
    });
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let runner = Arc::new(
        ProjectionRunner::new(store.clone(), ledger.clone()).with_options(
            RunnerOptions::default()
                .lease_duration(Duration::from_secs(30))
                .poll_interval(Duration::from_secs(120)),
        ),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let accounts = Accounts::new(Arc::new(store.clone()), ());
    accounts
        .execute("a", OpenAccount { owner: "A".into() })
        .await
        .expect("open through the pooler");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for expected in [1, 2] {
        if expected == 2 {
            accounts
                .execute("a", Deposit { amount: 5 })
                .await
                .expect("deposit through the pooler");
        }
        while ledger.applied(db.pool()).await < expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the runner was not woken (its poll interval is 120 s)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = stop.send(());
    running
        .await
        .expect("task")
        .expect("the runner stops cleanly");
    db.drop_schema().await;
}

/// A store connected to a transaction pooler as if to PostgreSQL directly
/// (the pooler's URL given to `connect`, the documented pooler mode
/// missed): refused at connect, with an error naming the way out, instead
/// of failing a third of its operations and decoding replies meant for
/// other statements. Every attempt is refused, not some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_reached_as_if_directly_is_refused_at_connect() {
    let bouncer = PgBouncer::start();
    for attempt in 0..5 {
        let refused = PostgresEventStore::connect(&bouncer.url("postgres"))
            .await
            .err()
            .unwrap_or_else(|| panic!("attempt {attempt}: connected as if directly"));
        assert!(
            matches!(refused, cqrskit::postgres::Error::TransactionPooler { .. }),
            "attempt {attempt}: {refused}"
        );
        let message = refused.to_string();
        assert!(
            message.contains("connect_through_pooler") && message.contains("pool_mode = session"),
            "{message}"
        );
    }
    // A pool built by the application, checked at start-up.
    let pool = sqlx::PgPool::connect(&bouncer.url("postgres"))
        .await
        .expect("a pool through the pooler");
    let refused = PostgresEventStore::from_pool(pool)
        .verify_schema()
        .await
        .expect_err("refused");
    assert!(
        matches!(refused, cqrskit::postgres::Error::TransactionPooler { .. }),
        "{refused}"
    );
}
