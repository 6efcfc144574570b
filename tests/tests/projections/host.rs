//! The application host running several projections, a partitioned one
//! and services of its own, with one shutdown.

use std::sync::Mutex;

use cqrskit::host::{
    BoxError, Host, HostError, HostHandle, Hosted, Prepare, ServiceState, Shutdown, Stage,
};
use cqrskit::postgres::PartitionedRunner;

use super::*;

/// An ingress service that records, when told to stop, the state of every
/// service of its host: the workers must still run then.
struct Gate {
    host: Mutex<Option<HostHandle>>,
    seen_at_stop: Mutex<Vec<(String, ServiceState)>>,
}

#[cqrskit::async_trait]
impl Hosted for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    fn stage(&self) -> Stage {
        Stage::Ingress
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        shutdown.await;
        let host = self.host.lock().expect("lock").clone().expect("a handle");
        let seen = host
            .health()
            .await
            .services
            .into_iter()
            .map(|service| (service.name, service.state))
            .collect();
        *self.seen_at_stop.lock().expect("lock") = seen;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_runs_projections_partitioned_or_not_reads_its_writes_and_stops_ingress_first() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 3).await;
    let whole = Arc::new(Ledger::create(&db, "ledger_a").await);
    let split = Arc::new(Ledger::create(&db, "ledger_b").await);
    let partitioned = Arc::new(
        PartitionedRunner::new(db.store.clone(), split.clone(), 2)
            .expect("two partitions")
            .with_options(options(OnExhausted::Stop)),
    );
    let gate = Arc::new(Gate {
        host: Mutex::new(None),
        seen_at_stop: Mutex::new(Vec::new()),
    });
    let host = Host::new()
        .prepare(db.store.clone())
        .service(runner(&db, &whole, OnExhausted::Stop))
        .service(partitioned.clone())
        .service(gate.clone());
    let handle = host.handle();
    *gate.host.lock().expect("lock") = Some(handle.clone());
    assert_eq!(handle.services(), ["ledger_a", "ledger_b", "gate"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));

    // Read-your-writes on both, the partitioned one by its own name: once
    // `wait_for` says so, the read model holds the command's event.
    for round in 0..5 {
        let id = format!("live-{round}");
        let outcome = accounts
            .execute(&id, OpenAccount { owner: id.clone() })
            .await
            .expect("open");
        let position = outcome.events.last().expect("an event").position;
        for (name, ledger) in [("ledger_a", &whole), ("ledger_b", &split)] {
            let applied = handle
                .wait_for(name, position, Duration::from_secs(20))
                .await
                .expect("a hosted projection");
            assert!(applied, "{name} reached {position}");
            assert!(
                ledger.balances(db.pool()).await.contains_key(&id),
                "{name} shows {id} once it says it applied it"
            );
        }
    }
    match handle
        .wait_for("nobody", Position::START, Duration::ZERO)
        .await
    {
        Err(HostError::NotFound(name)) => assert_eq!(name, "nobody"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match handle
        .wait_for("gate", Position::START, Duration::ZERO)
        .await
    {
        Err(HostError::NotFound(_)) => {}
        other => panic!("a service that is not a projection cannot be waited for: {other:?}"),
    }
    let health = handle.health().await;
    assert!(health.healthy, "{health:?}");
    for ledger in [&whole, &split] {
        assert_eq!(ledger.applied(db.pool()).await, 20);
        assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    }

    let _ = stop.send(());
    running.await.expect("host task").expect("a clean stop");
    // The ingress stopped while every worker still ran.
    let seen = gate.seen_at_stop.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            ("ledger_a".to_owned(), ServiceState::Running),
            ("ledger_b".to_owned(), ServiceState::Running),
            ("gate".to_owned(), ServiceState::Running),
        ]
    );
    let after = handle.health().await;
    assert!(!after.healthy);
    assert!(
        after
            .services
            .iter()
            .all(|service| service.state == ServiceState::Stopped),
        "{after:?}"
    );
    // One shutdown released every lease, each partition's too.
    assert_eq!(
        runner(&db, &whole, OnExhausted::Stop)
            .lease_holder()
            .await
            .expect("query"),
        None
    );
    for partition in partitioned.partitions() {
        assert_eq!(partition.lease_holder().await.expect("query"), None);
    }
    db.drop_schema().await;
}

/// A step that fails.
struct Refuse;

#[cqrskit::async_trait]
impl Prepare for Refuse {
    fn name(&self) -> &str {
        "licence check"
    }

    async fn prepare(&self) -> Result<(), BoxError> {
        Err("no licence".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_starts_nothing_with_two_services_of_one_name_or_a_failed_step() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 1).await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let twice = Host::new()
        .service(runner(&db, &ledger, OnExhausted::Stop))
        .service(runner(&db, &ledger, OnExhausted::Stop));
    match twice.run(std::future::pending()).await {
        Err(HostError::DuplicateName(name)) => assert_eq!(name, "ledger"),
        other => panic!("expected a duplicate name, got {other:?}"),
    }
    let refused = Host::new()
        .prepare(db.store.clone())
        .prepare(Refuse)
        .service(runner(&db, &ledger, OnExhausted::Stop));
    let handle = refused.handle();
    match refused.run(std::future::pending()).await {
        Err(error @ HostError::Prepare { .. }) => {
            assert!(error.to_string().contains("licence check"), "{error}");
        }
        other => panic!("expected a failed step, got {other:?}"),
    }
    assert_eq!(ledger.applied(db.pool()).await, 0, "nothing ran");
    assert_eq!(
        handle.health().await.services[0].state,
        ServiceState::Starting
    );
    db.drop_schema().await;
}

/// A service that fails at once.
struct Broken;

#[cqrskit::async_trait]
impl Hosted for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    async fn run(&self, _: Shutdown) -> Result<(), BoxError> {
        Err("the disk is gone".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_fails_is_reported_and_the_others_go_on() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let host = Host::new()
        .service(Broken)
        .service(runner(&db, &ledger, OnExhausted::Stop));
    let handle = host.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));
    business(&accounts, "acc-", 2).await;
    let last = db
        .store
        .read_log(Position::START, &cqrskit::LogFilter::all(), 1000)
        .await
        .expect("log");
    let position = last.last().expect("events").position;
    assert!(
        handle
            .wait_for("ledger", position, Duration::from_secs(20))
            .await
            .expect("hosted"),
        "the projection goes on"
    );
    let health = handle.health().await;
    assert!(!health.healthy);
    assert_eq!(
        health.services[0].state,
        ServiceState::Failed("the disk is gone".to_owned())
    );
    let _ = stop.send(());
    match running.await.expect("host task") {
        Err(HostError::Failed(failures)) => {
            let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, ["broken"]);
        }
        other => panic!("expected the failure reported, got {other:?}"),
    }
    db.drop_schema().await;
}
