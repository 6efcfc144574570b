//! The HTTP service example served on a free port and driven by `curl`,
//! the session `docs/operations.md` walks through: typed errors as status
//! codes, read-your-writes through a command's position, health, metrics,
//! and a graceful shutdown that leaves the projection's lease free.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use cqrs_examples::http_service::host;
use cqrs_tests::http::curl;
use cqrs_tests::postgres::TestStore;
use cqrskit::postgres::RunnerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_curl_session_works_as_written() {
    let db = TestStore::new().await;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the recorder of this test binary");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address: SocketAddr = listener.local_addr().expect("address");
    let base = format!("http://{address}");
    let options = RunnerOptions::default().poll_interval(Duration::from_millis(200));
    let host = host(db.store.clone(), listener, options, Some(metrics));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(host.run(async move {
        let _ = stopped.await;
    }));
    let call = move |method: &'static str, path: String, body: Option<&'static str>| {
        let url = format!("{base}{path}");
        tokio::task::spawn_blocking(move || curl(method, &url, body))
    };

    let (status, opened) = call(
        "POST",
        "/accounts/acc-1".into(),
        Some(r#"{"owner": "Ada"}"#),
    )
    .await
    .expect("join");
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["version"], 1);
    let (status, deposited) = call(
        "POST",
        "/accounts/acc-1/deposits".into(),
        Some(r#"{"amount": 100}"#),
    )
    .await
    .expect("join");
    assert_eq!(status, 200, "{deposited}");
    assert_eq!(deposited["version"], 2);
    let position = deposited["position"]
        .as_str()
        .expect("a position")
        .to_owned();

    // Read-your-writes: the read model answers once it holds the deposit.
    let (status, balance) = call("GET", format!("/balances/acc-1?after={position}"), None)
        .await
        .expect("join");
    assert_eq!(status, 200, "{balance}");
    assert_eq!(balance["balance"], 100);
    assert_eq!(balance["version"], 2);

    // Typed errors, each with its status and reason.
    let (status, refused) = call(
        "POST",
        "/accounts/acc-1/withdrawals".into(),
        Some(r#"{"amount": 500}"#),
    )
    .await
    .expect("join");
    assert_eq!((status, refused["error"].as_str()), (422, Some("rejected")));
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("insufficient funds")
    );
    let (status, twice) = call("POST", "/accounts/acc-1".into(), Some(r#"{"owner": "Bo"}"#))
        .await
        .expect("join");
    assert_eq!(status, 409, "{twice}");
    let (status, nobody) = call(
        "POST",
        "/accounts/nobody/deposits".into(),
        Some(r#"{"amount": 1}"#),
    )
    .await
    .expect("join");
    assert_eq!(status, 404, "{nobody}");
    let (status, negative) = call(
        "POST",
        "/accounts/acc-1/deposits".into(),
        Some(r#"{"amount": -5}"#),
    )
    .await
    .expect("join");
    assert_eq!(
        (status, negative["error"].as_str()),
        (400, Some("bad_input"))
    );
    assert!(
        negative["message"]
            .as_str()
            .unwrap_or("")
            .contains("amount"),
        "{negative}"
    );
    let (status, garbage) = call("POST", "/accounts/acc-1/deposits".into(), Some("not json"))
        .await
        .expect("join");
    assert_eq!(status, 400, "{garbage}");

    // A read model held back (its row locked by someone else): the wait
    // ends in 503, marked stale; once it moves on, the same read answers.
    let mut holder = db.pool().begin().await.expect("begin");
    sqlx::query(&format!(
        "SELECT 1 FROM {} WHERE account_id = 'acc-1' FOR UPDATE",
        db.table("account_balances")
    ))
    .execute(&mut *holder)
    .await
    .expect("lock the row");
    let (status, deposited) = call(
        "POST",
        "/accounts/acc-1/deposits".into(),
        Some(r#"{"amount": 50}"#),
    )
    .await
    .expect("join");
    assert_eq!(status, 200, "{deposited}");
    let position = deposited["position"]
        .as_str()
        .expect("a position")
        .to_owned();
    let (status, behind) = call(
        "GET",
        format!("/balances/acc-1?after={position}&wait_ms=300"),
        None,
    )
    .await
    .expect("join");
    assert_eq!(
        (status, behind["stale"].as_bool()),
        (503, Some(true)),
        "{behind}"
    );
    holder.commit().await.expect("release the row");
    let (status, balance) = call("GET", format!("/balances/acc-1?after={position}"), None)
        .await
        .expect("join");
    assert_eq!(
        (status, balance["balance"].as_i64()),
        (200, Some(150)),
        "{balance}"
    );

    // The aggregate now, in the past, and its history.
    let (status, account) = call("GET", "/accounts/acc-1".into(), None)
        .await
        .expect("join");
    assert_eq!(status, 200);
    assert_eq!(
        (account["owner"].as_str(), account["balance"].as_u64()),
        (Some("Ada"), Some(150))
    );
    let (_, then) = call("GET", "/accounts/acc-1?at_version=1".into(), None)
        .await
        .expect("join");
    assert_eq!(then["balance"], 0);
    let (status, _) = call("GET", "/accounts/acc-1?at_version=9".into(), None)
        .await
        .expect("join");
    assert_eq!(status, 404);
    // As of a time: the second event's recording time shows the deposit of 100.
    let (_, recorded) = call("GET", "/accounts/acc-1/events".into(), None)
        .await
        .expect("join");
    let second = recorded[1]["recorded_at"]
        .as_str()
        .expect("a time")
        .to_owned();
    let (status, as_of) = call(
        "GET",
        format!("/accounts/acc-1?at={}", second.replace('+', "%2B")),
        None,
    )
    .await
    .expect("join");
    assert_eq!(
        (status, as_of["balance"].as_u64()),
        (200, Some(100)),
        "{as_of}"
    );
    let (status, history) = call("GET", "/accounts/acc-1/events".into(), None)
        .await
        .expect("join");
    assert_eq!(status, 200);
    let types: Vec<&str> = history
        .as_array()
        .expect("an array")
        .iter()
        .map(|event| event["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["AccountOpened", "DepositMade", "DepositMade"]);
    let (status, _) = call("GET", "/accounts/nobody".into(), None)
        .await
        .expect("join");
    assert_eq!(status, 404);

    let (status, _) = call("GET", "/balances/acc-1?after=soon".into(), None)
        .await
        .expect("join");
    assert_eq!(status, 400);

    let (status, health) = call("GET", "/health".into(), None).await.expect("join");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (health["database"].as_str(), health["healthy"].as_bool()),
        (Some("up"), Some(true)),
        "{health}"
    );
    let services = health["services"].as_array().expect("the services");
    let balances = services
        .iter()
        .find(|service| service["name"] == "account_balances")
        .expect("the projection is hosted");
    assert_eq!(balances["state"], "running", "{health}");
    let detail = balances["report"]["detail"].as_str().expect("a report");
    assert!(
        detail.starts_with("0 events behind") && detail.contains("held here"),
        "{detail}"
    );
    assert!(
        services
            .iter()
            .any(|service| service["name"] == "http" && service["state"] == "running"),
        "{health}"
    );
    let (status, metrics) = call("GET", "/metrics".into(), None).await.expect("join");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text").to_owned();
    assert!(
        metrics.contains("cqrskit_commands_total{aggregate=\"account\",outcome=\"executed\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"rejected\""), "{metrics}");

    // Shutdown: requests end, the runner commits and gives its lease up.
    let _ = stop.send(());
    server.await.expect("join").expect("a clean stop");
    let holder = cqrskit::postgres::ProjectionRunner::new(
        db.store.clone(),
        std::sync::Arc::new(cqrs_examples::bank_account::balances::AccountBalances::new(
            &db.store,
        )),
    )
    .lease_holder()
    .await
    .expect("lease holder");
    assert_eq!(holder, None, "the lease is free for the next instance");
    let refused = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "--max-time", "2", &format!("http://{address}/health")])
            .status()
            .expect("curl runs")
    })
    .await
    .expect("join");
    assert!(!refused.success(), "nothing listens after the shutdown");
    db.drop_schema().await;
}
