//! Windowed read models in PostgreSQL: tumbling, hopping and session
//! windows of sensors' readings (some late within the lateness, some
//! beyond it) against a recomputation from the log, in one runner, in
//! partitions, in memory and after a rebuild; a runner configured with
//! other windows refuses.

use chrono::TimeDelta;
use cqrs_tests::readings::{
    SensorEvent, SensorStats, answers, hopping, log_readings, origin, recompute, sessions,
    tumbling, write_readings,
};
use cqrskit::InMemoryRunner;
use cqrskit::postgres::{PartitionedRunner, PgWindows};
use cqrskit::window::{InMemoryWindows, WindowQueries, WindowSpec};

use super::*;

const SENSORS: usize = 8;
const READINGS: usize = 60;

async fn caught_up(
    db: &TestStore,
    windows: &Arc<PgWindows<SensorStats>>,
) -> ProjectionRunner<PgWindows<SensorStats>> {
    let runner = ProjectionRunner::new(db.store.clone(), windows.clone())
        .with_options(options(OnExhausted::Stop));
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    runner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_match_a_recomputation_from_the_log_in_one_runner_in_partitions_and_in_memory() {
    let db = TestStore::new().await;
    let written = write_readings(&*db.shared(), SENSORS, 0, READINGS).await;
    settle(&db, written).await;
    let readings = log_readings(&*db.shared()).await;
    assert_eq!(readings.len(), written);
    let specs: [(&str, WindowSpec<SensorEvent>); 3] = [
        ("tumbling", tumbling()),
        ("hopping", hopping()),
        ("sessions", sessions()),
    ];
    for (version, (kind, spec)) in (1..).zip(specs) {
        let expected = recompute(&spec, &readings);
        assert!(
            expected.1.values().sum::<u64>() > 0 && expected.0.len() > SENSORS * 2,
            "{kind}: the log has late readings and many windows"
        );

        let windows = Arc::new(PgWindows::<SensorStats>::version(&db.store, spec, version));
        let runner = caught_up(&db, &windows).await;
        assert_eq!(
            answers(&*windows, SENSORS).await,
            expected,
            "{kind}, one runner"
        );

        let split = Arc::new(PgWindows::<SensorStats>::version(
            &db.store,
            spec,
            version + 10,
        ));
        let partitioned = PartitionedRunner::new(db.store.clone(), split.clone(), 3)
            .expect("three partitions")
            .with_options(options(OnExhausted::Stop));
        for partition in partitioned.partitions() {
            assert!(partition.acquire_lease().await.expect("lease"));
            partition.catch_up().await.expect("catch up");
        }
        assert_eq!(
            answers(&*split, SENSORS).await,
            expected,
            "{kind}, three partitions"
        );

        let memory = Arc::new(InMemoryWindows::<SensorStats>::new(spec));
        let memory_runner = InMemoryRunner::new(db.shared(), memory.clone());
        memory_runner.poll().await.expect("poll");
        assert_eq!(
            answers(&*memory, SENSORS).await,
            expected,
            "{kind}, in memory"
        );

        runner.rebuild().await.expect("rebuild");
        assert!(
            answers(&*windows, SENSORS).await.0.is_empty(),
            "{kind}: reset"
        );
        runner.catch_up().await.expect("replay");
        assert_eq!(
            answers(&*windows, SENSORS).await,
            expected,
            "{kind}, rebuilt"
        );
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queries_answer_a_keys_windows_by_time_and_say_which_are_final() {
    let db = TestStore::new().await;
    let written = write_readings(&*db.shared(), 2, 0, 30).await;
    settle(&db, written).await;
    let readings = log_readings(&*db.shared()).await;
    let (expected, _) = recompute(&tumbling(), &readings);
    let windows = Arc::new(PgWindows::<SensorStats>::new(&db.store, tumbling()));
    caught_up(&db, &windows).await;
    let memory = Arc::new(InMemoryWindows::<SensorStats>::new(tumbling()));
    InMemoryRunner::new(db.shared(), memory.clone())
        .poll()
        .await
        .expect("poll");
    let stores: [&dyn WindowQueries<SensorStats>; 2] = [&*windows, &*memory];
    let of_s1: Vec<_> = expected
        .iter()
        .filter(|((key, _), _)| key == "s1")
        .map(|((_, start), window)| (start, window))
        .collect();
    let (last_start, (_, last_stats, last_closed)) = *of_s1.last().expect("windows");
    assert!(!last_closed, "the latest window is open");
    assert!(of_s1.first().expect("windows").1.2, "the first is final");
    for store in stores {
        let latest = store.latest("s1").await.expect("latest").expect("some");
        assert_eq!((&latest.start, &latest.value), (last_start, last_stats));
        let held = store
            .at("s1", *last_start + TimeDelta::seconds(10))
            .await
            .expect("at");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].start, *last_start);
        let early = store
            .windows("s1", origin(), origin() + TimeDelta::minutes(10))
            .await
            .expect("between");
        assert!(
            early
                .iter()
                .all(|w| w.start >= origin() && w.start < origin() + TimeDelta::minutes(10))
        );
        assert_eq!(early.len(), 2);
        assert!(store.latest("nobody").await.expect("latest").is_none());
        assert_eq!(store.late_events("nobody").await.expect("late"), 0);
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_other_windows_refuses_to_set_up_and_names_the_way_out() {
    let db = TestStore::new().await;
    let written = write_readings(&*db.shared(), 2, 0, 5).await;
    settle(&db, written).await;
    let five = Arc::new(PgWindows::<SensorStats>::new(&db.store, tumbling()));
    caught_up(&db, &five).await;
    let ten_minutes = WindowSpec::tumbling(std::time::Duration::from_secs(600))
        .expect("valid")
        .event_time(cqrs_tests::readings::reading_time);
    let ten = Arc::new(PgWindows::<SensorStats>::new(&db.store, ten_minutes));
    let other =
        ProjectionRunner::new(db.store.clone(), ten).with_options(options(OnExhausted::Stop));
    let error = other.setup().await.expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("tumbling 300000 ms, lateness 120000 ms")
            && message.contains("tumbling 600000 ms, lateness 0 ms")
            && message.contains("new version"),
        "{message}"
    );
    // The windows built so far are untouched.
    let (expected, _) = recompute(&tumbling(), &log_readings(&*db.shared()).await);
    let mut found = 0;
    for key in ["s0", "s1"] {
        found += five
            .windows(
                key,
                origin() - TimeDelta::days(1),
                origin() + TimeDelta::days(1),
            )
            .await
            .expect("windows")
            .len();
    }
    assert_eq!(found, expected.len());
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shops_trends_agree_with_its_orders_in_postgres_and_in_memory() {
    use cqrs_examples::ecommerce::{
        Cancellations, Revenue, SHOP, cancellation_windows, revenue_windows,
    };
    let db = TestStore::new().await;
    let orders = 40;
    let (_, events) = super::documents::shop_workload(&db, orders).await;
    settle(&db, events).await;

    let revenue = Arc::new(PgWindows::<Revenue>::new(&db.store, revenue_windows()));
    let cancellations = Arc::new(PgWindows::<Cancellations>::new(
        &db.store,
        cancellation_windows(),
    ));
    for runner in [ProjectionRunner::new(db.store.clone(), revenue.clone())
        .with_options(options(OnExhausted::Stop))]
    {
        assert!(runner.acquire_lease().await.expect("lease"));
        runner.catch_up().await.expect("catch up");
    }
    let runner = ProjectionRunner::new(db.store.clone(), cancellations.clone())
        .with_options(options(OnExhausted::Stop));
    assert!(runner.acquire_lease().await.expect("lease"));
    runner.catch_up().await.expect("catch up");
    let memory_revenue = Arc::new(InMemoryWindows::<Revenue>::new(revenue_windows()));
    let memory_cancellations =
        Arc::new(InMemoryWindows::<Cancellations>::new(cancellation_windows()));
    InMemoryRunner::new(db.shared(), memory_revenue.clone())
        .poll()
        .await
        .expect("poll");
    InMemoryRunner::new(db.shared(), memory_cancellations.clone())
        .poll()
        .await
        .expect("poll");

    // What the workload did: one order in five paid (its lines at 100 a
    // piece), one in five cancelled, customers c-0 to c-6 in turn.
    let (mut paid, mut cancelled) = (0_u64, std::collections::BTreeMap::<String, u32>::new());
    for n in 0..orders {
        let units: u64 = (0..1 + n % 3).map(|k| 1 + ((n + k) % 4) as u64).sum();
        match n % 5 {
            0 => *cancelled.entry(format!("c-{}", n % 7)).or_default() += 1,
            1 => paid += units * 100,
            _ => {}
        }
    }
    let (from, to) = (
        chrono::Utc::now() - TimeDelta::hours(1),
        chrono::Utc::now() + TimeDelta::hours(1),
    );
    let in_postgres = revenue.windows(SHOP, from, to).await.expect("windows");
    assert_eq!(
        in_postgres,
        memory_revenue
            .windows(SHOP, from, to)
            .await
            .expect("windows")
    );
    assert_eq!(in_postgres.iter().map(|w| w.value.cents).sum::<u64>(), paid);
    for (customer, count) in cancelled {
        let now = chrono::Utc::now();
        let latest = cancellations.at(&customer, now).await.expect("at");
        assert_eq!(
            latest,
            memory_cancellations.at(&customer, now).await.expect("at")
        );
        assert_eq!(
            latest.len(),
            15,
            "fifteen windows of a minute's hop hold now"
        );
        // The one starting first holds the 15 minutes up to now.
        assert_eq!(latest[0].value.count, count, "{customer}");
    }
    // Keyed by the shop and by customers, not by their streams: refused in partitions.
    let split = PartitionedRunner::new(db.store.clone(), revenue.clone(), 2)
        .expect("two partitions")
        .with_options(options(OnExhausted::Stop));
    let error = split.partitions()[0].setup().await.expect_err("refused");
    assert!(
        error.to_string().contains("run it unpartitioned"),
        "{error}"
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_one_key_take_turns_or_fail_never_overwrite() {
    use cqrs_tests::readings::{Reading, reading};
    let db = TestStore::new().await;
    let windows = Arc::new(PgWindows::<SensorStats>::new(&db.store, tumbling()));
    ProjectionRunner::new(db.store.clone(), windows.clone())
        .setup()
        .await
        .expect("setup");
    let event = |n: usize| cqrskit::EventEnvelope {
        event_id: cqrskit::uuid::Uuid::now_v7(),
        stream: cqrskit::StreamId::new("sensor", "s0"),
        version: n as u64 + 1,
        position: cqrskit::Position::new(1, n as u64 + 1),
        event_type: "Reading".to_owned(),
        event_version: 1,
        payload: SensorEvent::Reading(Reading { ..reading(0, n) }),
        metadata: cqrskit::Metadata::default(),
        recorded_at: chrono::Utc::now(),
    };
    // The first reading of a key from two writers at once: the second fails.
    let (waited, second) = race(&db, &windows, vec![event(0)], vec![event(0)]).await;
    assert!(waited, "the second waits on the first's new key");
    let error = second.expect_err("started meanwhile");
    assert!(
        error.contains("started meanwhile by another writer"),
        "{error}"
    );

    // Later readings from two writers: the second waits, then counts on top.
    let (waited, second) = race(&db, &windows, vec![event(1)], vec![event(2)]).await;
    assert!(waited, "the second waits on the first's key");
    second.expect("the second applies after the first");
    let counted: u32 = answers(&*windows, 1)
        .await
        .0
        .values()
        .map(|(_, stats, _)| stats.count)
        .sum();
    assert_eq!(counted, 3, "each reading counted once");
    db.drop_schema().await;
}
