//! The metrics move: with a recorder installed (as an exporter would be),
//! commands, their retries and outcomes, a projection's applied events,
//! lag, lease and dead letters are counted under the documented names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::ledger::Ledger;
use cqrs_tests::postgres::TestStore;
use cqrs_tests::running::Running;
use cqrskit::postgres::{FailurePolicy, OnExhausted, ProjectionRunner, RunnerOptions};
use cqrskit::{CommandPipeline, PipelineOptions, RetryPolicy, telemetry};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// What was recorded, by `name{label=value,...}`.
#[derive(Default)]
struct Recorded {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn slot(map: &Mutex<BTreeMap<String, Arc<AtomicU64>>>, key: &Key) -> Arc<AtomicU64> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(render(key))
        .or_default()
        .clone()
}

struct Count(Arc<AtomicU64>);
impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

/// A gauge's last value (as f64 bits).
struct Level(Arc<AtomicU64>);
impl metrics::GaugeFn for Level {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + value);
    }
    fn decrement(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }
}

/// How many values a histogram recorded.
struct Samples(Arc<AtomicU64>);
impl metrics::HistogramFn for Samples {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Installed(Arc<Recorded>);

impl Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Count(slot(&self.0.counters, key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Level(slot(&self.0.gauges, key))))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Samples(slot(&self.0.histograms, key))))
    }
}

/// The recorder of this test binary, installed once.
fn recorded() -> &'static Arc<Recorded> {
    static RECORDED: OnceLock<Arc<Recorded>> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded = Arc::new(Recorded::default());
        metrics::set_global_recorder(Installed(recorded.clone())).expect("one recorder");
        recorded
    })
}

fn value(map: &Mutex<BTreeMap<String, Arc<AtomicU64>>>, key: &str) -> Option<u64> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .map(|slot| slot.load(Ordering::SeqCst))
}

fn counter(key: &str) -> u64 {
    value(&recorded().counters, key).unwrap_or(0)
}

fn gauge(key: &str) -> Option<f64> {
    value(&recorded().gauges, key).map(f64::from_bits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_counted_by_outcome_with_their_retries_and_durations() {
    let _ = recorded();
    let db = TestStore::new().await;
    let accounts = Arc::new(
        CommandPipeline::<BankAccount>::new(db.shared(), ())
            .with_options(PipelineOptions::default().retry(RetryPolicy::retries(50))),
    );
    let key = |name: &str, outcome: Option<&str>| match outcome {
        Some(outcome) => format!("{name}{{aggregate=account,outcome={outcome}}}"),
        None => format!("{name}{{aggregate=account}}"),
    };
    let executed = counter(&key(telemetry::COMMANDS, Some("executed")));
    let rejected = counter(&key(telemetry::COMMANDS, Some("rejected")));
    let appended = counter(&key(telemetry::EVENTS_APPENDED, None));
    let retries = counter(&key(telemetry::COMMAND_RETRIES, None));
    let timed = value(
        &recorded().histograms,
        &key(telemetry::COMMAND_DURATION, None),
    )
    .unwrap_or(0);
    let appends = |outcome: &str| {
        value(
            &recorded().histograms,
            &key(telemetry::APPEND_DURATION, Some(outcome)),
        )
        .unwrap_or(0)
    };
    let (appends_done, appends_conflicted) = (appends("appended"), appends("conflicted"));

    let owner = "A".to_owned();
    accounts
        .execute("metrics-acc", OpenAccount { owner })
        .await
        .expect("open");
    accounts
        .execute("metrics-acc", Withdraw { amount: 1000 })
        .await
        .expect_err("nothing to withdraw");
    // Twenty deposits racing on one account: some conflict and retry.
    let racing: Vec<_> = (0..20)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                accounts
                    .execute("metrics-acc", Deposit { amount: 1 })
                    .await
                    .expect("deposit")
            })
        })
        .collect();
    for deposit in racing {
        deposit.await.expect("join");
    }

    assert_eq!(
        counter(&key(telemetry::COMMANDS, Some("executed"))) - executed,
        21
    );
    assert_eq!(
        counter(&key(telemetry::COMMANDS, Some("rejected"))) - rejected,
        1
    );
    assert_eq!(
        counter(&key(telemetry::EVENTS_APPENDED, None)) - appended,
        21
    );
    assert!(
        counter(&key(telemetry::COMMAND_RETRIES, None)) > retries,
        "racing commands retried"
    );
    let timed_now = value(
        &recorded().histograms,
        &key(telemetry::COMMAND_DURATION, None),
    )
    .unwrap_or(0);
    assert_eq!(timed_now - timed, 22, "every command timed");
    // Each append timed: 21 stored; a conflicted one behind every retry
    // (and behind each decision on a stale cached state, retried at once).
    assert_eq!(appends("appended") - appends_done, 21);
    assert!(
        appends("conflicted") - appends_conflicted
            >= counter(&key(telemetry::COMMAND_RETRIES, None)) - retries
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_reports_what_it_applied_its_lag_lease_and_dead_letters() {
    let _ = recorded();
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    cqrs_tests::ledger::business(&accounts, "acc-", 3).await;
    accounts
        .execute("acc-0", Deposit { amount: 666 })
        .await
        .expect("deposit");
    cqrs_tests::scenarios::settled(&db.shared(), 16).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(666, Ordering::SeqCst);
    let runner = Arc::new(
        ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(
            RunnerOptions::default()
                .batch_size(5)
                .poll_interval(Duration::from_millis(20))
                .failure(
                    FailurePolicy::default()
                        .max_attempts(1)
                        .on_exhausted(OnExhausted::Park),
                ),
        ),
    );
    let running = Running::start(&runner);
    let key = |name: &str| format!("{name}{{projection=ledger}}");
    let started = std::time::Instant::now();
    while counter(&key(
        cqrskit::postgres::telemetry::PROJECTION_EVENTS_APPLIED,
    )) < 15
        || gauge(&key(cqrskit::postgres::telemetry::PROJECTION_LAG)) != Some(0.0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gauge(&key(cqrskit::postgres::telemetry::PROJECTION_LEASE_HELD)),
        Some(1.0)
    );
    assert_eq!(
        gauge(&key(cqrskit::postgres::telemetry::PROJECTION_DEAD_LETTERS)),
        Some(1.0)
    );
    running.stop().await.expect("a clean stop");
    assert_eq!(
        gauge(&key(cqrskit::postgres::telemetry::PROJECTION_LEASE_HELD)),
        Some(0.0)
    );
    db.drop_schema().await;
}

/// A long catch-up reports how many events it has still to apply while it
/// works, not only once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_behind_reports_its_lag_in_events_while_it_catches_up() {
    let _ = recorded();
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    cqrs_tests::ledger::business(&accounts, "slow-", 8).await;
    cqrs_tests::scenarios::settled(&db.shared(), 40).await;
    let ledger = Arc::new(Ledger::create(&db, "slow_ledger").await);
    // Every deposit of 20 pauses: eight of them make a catch-up of ~1.6 s.
    ledger.slow_amount.store(20, Ordering::SeqCst);
    ledger.slow_millis.store(200, Ordering::SeqCst);
    let runner = Arc::new(
        ProjectionRunner::new(db.store.clone(), ledger.clone()).with_options(
            RunnerOptions::default()
                .batch_size(2)
                .poll_interval(Duration::from_millis(50)),
        ),
    );
    let running = Running::start(&runner);
    let key = format!(
        "{}{{projection=slow_ledger}}",
        cqrskit::postgres::telemetry::PROJECTION_LAG_EVENTS
    );
    let started = std::time::Instant::now();
    let mut seen_behind = Vec::new();
    loop {
        match gauge(&key) {
            Some(events) if events > 0.0 => seen_behind.push(events),
            Some(_) if !seen_behind.is_empty() => break,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the lag in events never went to 0 after being reported: {seen_behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen_behind.iter().all(|events| *events <= 40.0),
        "{seen_behind:?}"
    );
    assert!(
        seen_behind.first() > seen_behind.last() || seen_behind.len() == 1,
        "it shrinks as the runner works: {seen_behind:?}"
    );
    assert_eq!(ledger.applied(db.pool()).await, 40);
    running.stop().await.expect("a clean stop");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_counts_the_messages_jetstream_acknowledged() {
    let _ = recorded();
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    let owner = "A".to_owned();
    accounts
        .execute("acc", OpenAccount { owner })
        .await
        .expect("open");
    accounts
        .execute("acc", Deposit { amount: 10 })
        .await
        .expect("deposit");
    accounts
        .execute("acc", Withdraw { amount: 3 })
        .await
        .expect("withdraw");
    cqrs_tests::scenarios::settled(&db.shared(), 3).await;
    let jetstream = cqrs_tests::nats::jetstream().await;
    let prefix = cqrs_tests::nats::relay_to_the_end(
        &db.store,
        &jetstream,
        cqrskit::nats::ContentMode::Structured,
    )
    .await;
    // The opening and the withdrawal leave; the deposit stays inside.
    assert_eq!(
        counter(&format!(
            "{}{{relay=relay_{prefix}}}",
            cqrskit::nats::telemetry::RELAY_PUBLISHED
        )),
        2
    );
    jetstream
        .delete_stream(cqrs_tests::nats::stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}
