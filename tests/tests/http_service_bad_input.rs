//! The HTTP service example against bad input and bad data: amounts the
//! read model cannot hold, ids the service does not take, and one account's
//! unstorable event, which must not take the other accounts down. (A test
//! binary of its own: the metrics recorder is global to a binary.)

use std::time::Duration;

use cqrs_examples::http_service::host;
use cqrs_tests::http::curl;
use cqrs_tests::postgres::TestStore;
use cqrskit::Backoff;
use serde_json::Value;

/// One account's bad data does not take the other accounts down, and bad
/// input is a 4xx: a deposit of 2^63 cents (more than the balance table
/// holds) is refused at the command with 422; ids the service does not take
/// are 400 on every route; and an unstorable deposit written by other code
/// (an import) parks that account's balance while the others stay current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_account_leaves_the_others_current_and_bad_input_is_a_4xx() {
    use cqrs_examples::bank_account::{AccountEvent, BankAccount, DepositMade};
    use cqrskit::{CommandPipeline, EventStore, ExpectedVersion, Metadata, NewEvent};

    let db = TestStore::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let defaults = cqrs_examples::bank_account::balances::balances_options();
    let options = defaults
        .clone()
        .poll_interval(Duration::from_millis(100))
        .failure(
            defaults
                .get_failure()
                .max_attempts(2)
                .backoff(Backoff::default().initial(Duration::from_millis(10))),
        );
    let host = host(db.store.clone(), listener, options, None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(host.run(async move {
        let _ = stopped.await;
    }));
    let call = move |method: &'static str, path: String, body: Option<String>| {
        let url = format!("{base}{path}");
        tokio::task::spawn_blocking(move || curl(method, &url, body.as_deref()))
    };
    for id in ["good", "bad"] {
        let (status, body) = call(
            "POST",
            format!("/accounts/{id}"),
            Some(r#"{"owner": "Ann"}"#.into()),
        )
        .await
        .expect("join");
        assert_eq!(status, 201, "{body}");
    }

    let (status, refused) = call(
        "POST",
        "/accounts/good/deposits".into(),
        Some(format!(r#"{{"amount": {}}}"#, 1_u64 << 63)),
    )
    .await
    .expect("join");
    assert_eq!((status, refused["error"].as_str()), (422, Some("rejected")));
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("balance overflow"),
        "{refused}"
    );

    let long = "x".repeat(65);
    for bad_id in ["a%00b", "a%20b", "%C3%A9", long.as_str()] {
        for (method, path, body) in [
            (
                "POST",
                format!("/accounts/{bad_id}"),
                Some(r#"{"owner": "X"}"#),
            ),
            (
                "POST",
                format!("/accounts/{bad_id}/deposits"),
                Some(r#"{"amount": 1}"#),
            ),
            ("GET", format!("/accounts/{bad_id}"), None),
            ("GET", format!("/accounts/{bad_id}/events"), None),
            ("GET", format!("/balances/{bad_id}"), None),
        ] {
            let (status, answer) = call(method, path.clone(), body.map(str::to_owned))
                .await
                .expect("join");
            assert_eq!(status, 400, "{method} {path}: {answer}");
        }
    }

    // An import writes a deposit the balance table cannot hold.
    let imported = NewEvent::from_event(
        &AccountEvent::DepositMade(DepositMade { amount: 1 << 63 }),
        Metadata::new(),
    )
    .expect("encodes");
    let stored = db
        .store
        .append(
            &CommandPipeline::<BankAccount>::stream_id("bad"),
            ExpectedVersion::Exact(1),
            vec![imported],
        )
        .await
        .expect("imported");
    let (status, deposited) = call(
        "POST",
        "/accounts/good/deposits".into(),
        Some(r#"{"amount": 5}"#.into()),
    )
    .await
    .expect("join");
    assert_eq!(status, 200, "{deposited}");
    let after = deposited["position"].as_str().expect("a position");
    let (status, balance) = call("GET", format!("/balances/good?after={after}"), None)
        .await
        .expect("join");
    assert_eq!(
        (status, &balance["balance"]),
        (200, &Value::from(5)),
        "{balance}"
    );
    // The bad account's row stays as it was before the import, never
    // moving on without it.
    let (status, held) = call(
        "GET",
        format!("/balances/bad?after={}", stored.events[0].position),
        None,
    )
    .await
    .expect("join");
    assert_eq!(
        (status, &held["balance"], &held["version"]),
        (200, &Value::from(0), &Value::from(1)),
        "{held}"
    );

    let _ = stop.send(());
    server.await.expect("join").expect("served");
    db.drop_schema().await;
}
