//! The daemon running several projections.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_runs_several_projections_with_one_shutdown_and_releases_every_lease() {
    let db = TestStore::new().await;
    let accounts = accounts(&db);
    business(&accounts, "acc-", 3).await;
    let ledgers = [
        Arc::new(Ledger::create(&db, "ledger_a").await),
        Arc::new(Ledger::create(&db, "ledger_b").await),
    ];
    let daemon = Arc::new(
        ProjectionDaemon::new()
            .with(runner(&db, &ledgers[0], OnExhausted::Stop))
            .with(runner(&db, &ledgers[1], OnExhausted::Stop)),
    );
    assert_eq!(daemon.projections(), ["ledger_a", "ledger_b"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            daemon
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    // Both follow live appends; the status view shows them caught up and
    // holding their leases.
    business(&accounts, "more-", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = daemon.status().await;
        let caught_up = status.iter().all(|projection| {
            matches!(&projection.lag, Ok(lag) if lag.events == 0 && lag.checkpoint != Position::START)
                && matches!(&projection.holder, Ok(Some(_)))
        });
        if caught_up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not caught up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for ledger in &ledgers {
        assert_eq!(ledger.applied(db.pool()).await, 25);
        assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    }

    let _ = stop.send(());
    running.await.expect("daemon task").expect("a clean stop");
    // One shutdown released every lease: the next start need not wait.
    for ledger in &ledgers {
        let next = runner(&db, ledger, OnExhausted::Stop);
        assert_eq!(next.lease_holder().await.expect("query"), None);
        assert!(next.acquire_lease().await.expect("lease"));
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_to_run_one_projection_twice() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    let daemon = ProjectionDaemon::new()
        .with(runner(&db, &ledger, OnExhausted::Stop))
        .with(runner(&db, &ledger, OnExhausted::Stop));
    match daemon.run(std::future::ready(())).await {
        Err(Error::DuplicateProjection(name)) => assert_eq!(name, "ledger"),
        other => panic!("expected a duplicate-projection error, got {other:?}"),
    }
    db.drop_schema().await;
}
