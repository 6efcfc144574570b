//! `cqrs-admin` run as a real process against PostgreSQL, each test in a
//! schema of its own; the projection runners it talks to run in the test.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cqrs_examples::bank_account::BankAccount;
use cqrs_tests::ledger::{self, Ledger};
use cqrs_tests::postgres::TestStore;
use cqrs_tests::running::Running;
use cqrskit::CommandPipeline;
use cqrskit::postgres::{FailurePolicy, OnExhausted, ProjectionRunner, RunnerOptions};
use serde_json::Value;

/// `cqrs-admin --schema <schema> <args>`, with the suite's database.
fn admin(schema: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cqrs-admin"))
        .env("DATABASE_URL", cqrs_tests::postgres::database_url())
        .args(["--schema", schema])
        .args(args)
        .output()
        .expect("cqrs-admin runs")
}

/// The command's stdout as JSON, after checking it succeeded.
fn json(schema: &str, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let output = admin(schema, &with_json);
    assert!(
        output.status.success(),
        "cqrs-admin {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn accounts(db: &TestStore) -> CommandPipeline<BankAccount> {
    CommandPipeline::new(db.shared(), ())
}

/// A runner of `ledger` that parks a failing event at once and looks for
/// requests every 100 ms.
fn runner(db: &TestStore, ledger: Arc<Ledger>) -> Arc<ProjectionRunner<Ledger>> {
    let options = RunnerOptions::default()
        .poll_interval(Duration::from_millis(100))
        .failure(
            FailurePolicy::default()
                .max_attempts(1)
                .on_exhausted(OnExhausted::Park),
        );
    Arc::new(ProjectionRunner::new(db.store.clone(), ledger).with_options(options))
}

/// Waits until the running `runner` has applied everything appended so far.
async fn until_caught_up(runner: &ProjectionRunner<Ledger>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holder = runner.lease_holder().await.expect("lease holder");
        let mine = holder.is_some_and(|holder| holder.owner == runner.owner());
        if mine && runner.lag().await.expect("lag").events == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_migrates_a_schema_and_reads_streams_and_the_log() {
    let db = TestStore::new().await;
    let fresh = format!("{}_fresh", db.schema);
    // Before: every migration pending, and exit 5 for a deploy script.
    let behind = admin(&fresh, &["schema"]);
    assert_eq!(behind.status.code(), Some(5), "{}", stderr(&behind));
    assert!(stdout(&behind).contains("pending"), "{}", stdout(&behind));
    assert!(stderr(&behind).contains("migrate"), "{}", stderr(&behind));
    let migrated = admin(&fresh, &["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(stdout(&migrated).contains("is migrated"));
    let status = json(&fresh, &["schema"]);
    assert_eq!(status["current"], true);
    let migrations = status["migrations"].as_array().expect("an array");
    assert!(!migrations.is_empty());
    assert!(
        migrations.iter().all(|m| m["state"] == "applied"),
        "{status}"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'events'",
    )
    .bind(&fresh)
    .fetch_one(db.pool())
    .await
    .expect("query");
    assert_eq!(tables, 1, "migrate created the events table");
    sqlx::query(&format!("DROP SCHEMA \"{fresh}\" CASCADE"))
        .execute(db.pool())
        .await
        .expect("drop");

    ledger::business(&accounts(&db), "a", 2).await;
    let events = json(&db.schema, &["stream", "account", "a0"]);
    let events = events.as_array().expect("an array");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "DepositMade",
            "DepositMade",
            "DepositMade",
            "WithdrawalMade"
        ]
    );
    assert_eq!(events[1]["payload"]["amount"], 100);
    assert!(events[0]["metadata"]["correlation_id"].is_string());

    let upto = json(
        &db.schema,
        &["stream", "account", "a0", "--at-version", "2"],
    );
    assert_eq!(upto.as_array().map(Vec::len), Some(2));
    let third_at = events[2]["recorded_at"].as_str().expect("a time");
    let by_time = json(
        &db.schema,
        &["stream", "account", "a0", "--at-time", third_at],
    );
    assert_eq!(by_time.as_array().map(Vec::len), Some(3));

    let table = admin(&db.schema, &["stream", "account", "a1"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(text.starts_with("VERSION"), "{text}");
    assert_eq!(text.lines().count(), 6, "a header and five events: {text}");

    let missing = admin(&db.schema, &["stream", "account", "nobody"]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("account/nobody has no events"));

    let deposits = json(
        &db.schema,
        &["log", "--types", "DepositMade,WithdrawalMade"],
    );
    let deposits = deposits.as_array().expect("an array");
    assert_eq!(deposits.len(), 8);
    let from = deposits[3]["position"].as_str().expect("a position");
    let rest = json(
        &db.schema,
        &[
            "log",
            "--types",
            "DepositMade,WithdrawalMade",
            "--from",
            from,
        ],
    );
    assert_eq!(
        rest.as_array().map(Vec::len),
        Some(4),
        "the log after a position"
    );

    let bad = admin(&db.schema, &["log", "--from", "12"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("<transaction>:<sequence>"),
        "{}",
        stderr(&bad)
    );

    // Following the log prints what is appended after it started.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_cqrs-admin"))
        .env("DATABASE_URL", cqrs_tests::postgres::database_url())
        .args([
            "--schema",
            &db.schema,
            "log",
            "--follow",
            "--json",
            "--types",
            "AccountOpened",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ledger::business(&accounts(&db), "later", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    follower.kill().expect("kill");
    let followed = follower.wait_with_output().expect("output");
    let streams: Vec<String> = stdout(&followed)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")["stream"].to_string())
        .collect();
    assert_eq!(
        streams,
        ["\"account/a0\"", "\"account/a1\"", "\"account/later0\""]
    );

    let oldest = json(&db.schema, &["oldest-transaction"]);
    assert_eq!(oldest, Value::Null, "no append in flight");
    // An append whose transaction stays open is the one named.
    let mut open = db.pool().begin().await.expect("begin");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *open)
        .await
        .expect("pid");
    let event = cqrskit::NewEvent::from_event(
        &cqrs_examples::bank_account::AccountEvent::from(
            cqrs_examples::bank_account::DepositMade { amount: 1 },
        ),
        cqrskit::Metadata::default(),
    )
    .expect("encode");
    db.store
        .append_in(
            &mut open,
            &cqrskit::StreamId::new("account", "a0"),
            cqrskit::ExpectedVersion::Any,
            vec![event],
        )
        .await
        .expect("append in the open transaction");
    let oldest = json(&db.schema, &["oldest-transaction"]);
    assert_eq!(oldest["pid"], pid, "{oldest}");
    let table = stdout(&admin(&db.schema, &["oldest-transaction"]));
    assert!(
        table.starts_with("PID") && table.contains(&pid.to_string()),
        "{table}"
    );
    open.rollback().await.expect("rollback");
    assert_eq!(json(&db.schema, &["oldest-transaction"]), Value::Null);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_shows_projections_and_lists_shows_skips_and_replays_dead_letters() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger.poison.store(20, Ordering::SeqCst);
    ledger::business(&accounts(&db), "a", 3).await;
    let runner = runner(&db, ledger.clone());
    let running = Running::start(&runner);
    until_caught_up(&runner).await;

    let projections = json(&db.schema, &["projections"]);
    let row = &projections[0];
    assert_eq!(row["name"], "ledger");
    assert_eq!(row["state"], "running");
    assert_eq!(row["lag_events"], 0);
    assert_eq!(row["open_dead_letters"], 3, "each account's deposit of 20");
    assert_eq!(row["owner"], runner.owner());
    let table = stdout(&admin(&db.schema, &["projections"]));
    assert!(table.starts_with("PROJECTION"), "{table}");
    assert!(
        table.contains("ledger") && table.contains("running"),
        "{table}"
    );

    let letters = json(&db.schema, &["dead-letters", "ledger"]);
    let letters = letters.as_array().expect("an array");
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l["status"] == "open" && l["event_type"] == "DepositMade")
    );
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("poison deposit of 20")
    );
    let first = letters[0]["id"].as_i64().expect("an id").to_string();

    let shown = json(&db.schema, &["dead-letters", "ledger", "show", &first]);
    assert_eq!(shown["event"]["payload"]["amount"], 20);
    assert_eq!(shown["stream"], letters[0]["stream"]);

    let skipped = json(&db.schema, &["dead-letters", "ledger", "skip", &first]);
    assert_eq!(skipped["status"], "skipped");
    let again = admin(&db.schema, &["dead-letters", "ledger", "skip", &first]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("closed already"),
        "{}",
        stderr(&again)
    );
    let unknown = admin(&db.schema, &["dead-letters", "ledger", "show", "999999"]);
    assert_eq!(unknown.status.code(), Some(3));
    let no_projection = admin(&db.schema, &["dead-letters", "nope"]);
    assert_eq!(no_projection.status.code(), Some(3));
    assert!(stderr(&no_projection).contains("no projection named `nope`"));

    // Fixed: the running runner replays the two still open.
    ledger.poison.store(0, Ordering::SeqCst);
    let replay = admin(
        &db.schema,
        &["dead-letters", "ledger", "replay", "--timeout", "30"],
    );
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(
        stdout(&replay).contains("0 still open"),
        "{}",
        stdout(&replay)
    );
    let all = json(&db.schema, &["dead-letters", "ledger", "list", "--all"]);
    let statuses: Vec<&str> = all
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| l["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["skipped", "replayed", "replayed"]);
    let mut expected = ledger::fold(&*db.shared()).await;
    let skipped_account = letters[0]["stream"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("account/");
    *expected.get_mut(skipped_account).expect("the account") -= 20;
    assert_eq!(
        ledger.balances(db.pool()).await,
        expected,
        "all but the skipped deposit"
    );

    running.stop().await.expect("a clean stop");
    let idle = json(&db.schema, &["projections"]);
    assert_eq!(idle[0]["state"], "idle");
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_rebuilds_a_projection_through_its_running_runner_and_resumes_a_stopped_one() {
    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "ledger").await);
    ledger::business(&accounts(&db), "a", 20).await;
    let runner = runner(&db, ledger.clone());
    let running = Running::start(&runner);
    until_caught_up(&runner).await;
    // The read model drifted (a bug since fixed, a hand edit): rebuild it.
    sqlx::query(&format!(
        "UPDATE \"{}\".ledger_balances SET balance = 0",
        db.schema
    ))
    .execute(db.pool())
    .await
    .expect("drift");
    assert_ne!(
        ledger.balances(db.pool()).await,
        ledger::fold(&*db.shared()).await
    );
    let rebuilt = admin(&db.schema, &["rebuild", "ledger", "--timeout", "60"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert!(stdout(&rebuilt).contains("ledger is rebuilt"));
    assert!(
        stderr(&rebuilt).contains("rebuilding ledger ["),
        "{}",
        stderr(&rebuilt)
    );
    assert!(
        stderr(&rebuilt).contains("100/100 events (100%)"),
        "{}",
        stderr(&rebuilt)
    );
    assert_eq!(
        ledger.balances(db.pool()).await,
        ledger::fold(&*db.shared()).await
    );
    assert_eq!(ledger.applied(db.pool()).await, 100, "each event once");
    assert_eq!(
        json(&db.schema, &["projections"])[0]["requested"],
        Value::Null
    );

    let partition = admin(&db.schema, &["rebuild", "ledger[0/2]"]);
    assert_eq!(partition.status.code(), Some(1));
    assert!(
        stderr(&partition).contains("partitioned projection"),
        "{}",
        stderr(&partition)
    );
    let unknown = admin(&db.schema, &["rebuild", "nope", "--no-wait"]);
    assert_eq!(unknown.status.code(), Some(3));

    // A rebuild the database refuses (the read model frozen against
    // truncation): the runner records why, and `rebuild` says so at once
    // instead of waiting out its timeout.
    // language=SQL
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION \"{0}\".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'the balances are frozen for the audit'; END $$;
         CREATE TRIGGER frozen BEFORE TRUNCATE ON \"{0}\".ledger_balances
             FOR EACH STATEMENT EXECUTE FUNCTION \"{0}\".refuse()",
        db.schema
    ))
    .execute(db.pool())
    .await
    .expect("freeze the read model");
    let refused = admin(&db.schema, &["rebuild", "ledger", "--timeout", "60"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("frozen for the audit")
            && stderr(&refused).contains("cqrs-admin withdraw ledger"),
        "{}",
        stderr(&refused)
    );
    let failing = json(&db.schema, &["projections"]);
    assert_eq!(failing[0]["requested"], "rebuild");
    assert!(
        failing[0]["request_failures"].as_u64() >= Some(1),
        "{failing}"
    );
    assert!(
        failing[0]["request_error"]
            .as_str()
            .is_some_and(|error| error.contains("frozen for the audit")),
        "{failing}"
    );
    assert!(stdout(&admin(&db.schema, &["projections"])).contains("rebuild (failed"));
    // Unfrozen: the next poll carries the request out, and the failure goes
    // with it.
    // language=SQL
    sqlx::raw_sql(&format!(
        "DROP TRIGGER frozen ON \"{}\".ledger_balances",
        db.schema
    ))
    .execute(db.pool())
    .await
    .expect("unfreeze");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let info = json(&db.schema, &["projections"]);
        if info[0]["requested"].is_null() || std::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(done[0]["requested"].is_null(), "{done}");
    assert!(done[0]["request_error"].is_null(), "{done}");
    assert_eq!(done[0]["request_failures"], 0, "{done}");
    until_caught_up(&runner).await;
    assert_eq!(
        ledger.balances(db.pool()).await,
        ledger::fold(&*db.shared()).await
    );

    running.stop().await.expect("a clean stop");

    // With no runner, the request waits; a bounded wait says so and times out.
    let waiting = admin(&db.schema, &["rebuild", "ledger", "--timeout", "1"]);
    assert_eq!(waiting.status.code(), Some(4), "{}", stderr(&waiting));
    assert!(stderr(&waiting).contains("no runner holds ledger's lease"));
    assert_eq!(
        json(&db.schema, &["projections"])[0]["requested"],
        "rebuild"
    );
    // Requested by mistake: withdrawn before any runner takes it.
    let withdrawn = admin(&db.schema, &["withdraw", "ledger"]);
    assert!(withdrawn.status.success(), "{}", stderr(&withdrawn));
    assert!(stdout(&withdrawn).contains("the rebuild request for ledger is withdrawn"));
    assert_eq!(
        json(&db.schema, &["projections"])[0]["requested"],
        Value::Null
    );
    let again = admin(&db.schema, &["withdraw", "ledger"]);
    assert!(stdout(&again).contains("nothing was requested of ledger"));
    assert_eq!(
        admin(&db.schema, &["withdraw", "nope"]).status.code(),
        Some(3)
    );

    // Stopped at a poison event: shown with its reason, then resumed.
    sqlx::query(&format!(
        "UPDATE \"{}\".projections SET stopped_at = now(), stop_reason = 'poison deposit' WHERE name = 'ledger'",
        db.schema
    ))
    .execute(db.pool())
    .await
    .expect("stop");
    let listed = admin(&db.schema, &["projections"]);
    assert!(
        stdout(&listed).contains("ledger stopped: poison deposit"),
        "{}",
        stdout(&listed)
    );
    assert_eq!(json(&db.schema, &["projections"])[0]["state"], "stopped");
    let resumed = admin(&db.schema, &["resume", "ledger"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(json(&db.schema, &["projections"])[0]["state"], "idle");
    let no_database = Command::new(env!("CARGO_BIN_EXE_cqrs-admin"))
        .env_remove("DATABASE_URL")
        .arg("projections")
        .output()
        .expect("runs");
    assert_eq!(no_database.status.code(), Some(2));
    assert!(stderr(&no_database).contains("set DATABASE_URL"));
    db.drop_schema().await;
}

/// A partitioned projection is one projection to the operator: listed as a
/// whole with its partitions below, its dead letters and replays by its
/// own name; a partition whose runner died holding its lease shows as
/// lapsed, not idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_shows_a_partitioned_projection_as_one_and_a_dead_owners_lease_as_lapsed() {
    use cqrskit::postgres::{Partition, PartitionedRunner};

    let db = TestStore::new().await;
    let ledger = Arc::new(Ledger::create(&db, "order_windows").await);
    ledger.poison.store(20, Ordering::SeqCst);
    ledger::business(&accounts(&db), "a", 6).await;
    let options = RunnerOptions::default()
        .poll_interval(Duration::from_millis(100))
        .lease_duration(Duration::from_secs(1))
        .failure(
            FailurePolicy::default()
                .max_attempts(1)
                .on_exhausted(OnExhausted::Park),
        );
    let partitioned = Arc::new(
        PartitionedRunner::new(db.store.clone(), ledger.clone(), 2)
            .expect("two partitions")
            .with_options(options.clone())
            .with_owner("instance-a"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let partitioned = partitioned.clone();
        async move {
            partitioned
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = json(&db.schema, &["projections"]);
        let whole = &listed[0];
        if whole["state"] == "running" && whole["lag_events"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never caught up: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let listed = json(&db.schema, &["projections"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let whole = &listed[0];
    assert_eq!(whole["name"], "order_windows");
    assert_eq!(whole["owners"], serde_json::json!(["instance-a"]));
    assert_eq!(
        whole["open_dead_letters"], 6,
        "each account's deposit of 20"
    );
    let partitions: Vec<&str> = whole["partitions"]
        .as_array()
        .expect("its partitions")
        .iter()
        .map(|partition| partition["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(partitions, ["order_windows[0/2]", "order_windows[1/2]"]);
    let table = stdout(&admin(&db.schema, &["projections"]));
    assert!(
        table.contains("2 partitions") && table.contains("  order_windows[1/2]"),
        "{table}"
    );

    // Its dead letters by its own name: every partition's, in log order.
    let letters = json(&db.schema, &["dead-letters", "order_windows"]);
    let letters = letters.as_array().expect("an array");
    assert_eq!(letters.len(), 6);
    let owners: std::collections::BTreeSet<&str> = letters
        .iter()
        .map(|letter| letter["projection"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(owners.len(), 2, "both partitions parked some: {owners:?}");
    ledger.poison.store(0, Ordering::SeqCst);
    let replay = admin(
        &db.schema,
        &["dead-letters", "order_windows", "replay", "--timeout", "30"],
    );
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(
        stdout(&replay).contains("0 still open"),
        "{}",
        stdout(&replay)
    );
    assert_eq!(
        ledger.balances(db.pool()).await,
        ledger::fold(&*db.shared()).await
    );
    let rebuild = admin(&db.schema, &["rebuild", "order_windows", "--no-wait"]);
    assert_eq!(rebuild.status.code(), Some(1));
    assert!(
        stderr(&rebuild).contains("partitioned projection"),
        "{}",
        stderr(&rebuild)
    );

    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");
    let stopped = json(&db.schema, &["projections"]);
    assert_eq!(stopped[0]["state"], "idle", "{stopped}");

    // A runner that dies holding a partition's lease (taken, never given
    // up): once the lease runs out, the partition and the whole show it.
    let dying = ProjectionRunner::new(db.store.clone(), ledger.clone())
        .for_partition(Partition::new(1, 2).expect("a partition"))
        .with_options(options)
        .with_owner("instance-killed");
    assert!(dying.acquire_lease().await.expect("the lease"));
    drop(dying);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let lapsed = json(&db.schema, &["projections"]);
    assert_eq!(lapsed[0]["state"], "lapsed", "{lapsed}");
    assert_eq!(lapsed[0]["partitions"][0]["state"], "idle");
    assert_eq!(lapsed[0]["partitions"][1]["state"], "lapsed");
    assert_eq!(lapsed[0]["partitions"][1]["owner"], "instance-killed");
    let table = stdout(&admin(&db.schema, &["projections"]));
    assert!(table.contains("ran out without being given up"), "{table}");
    db.drop_schema().await;
}

/// A consumer's dead letters from the command line, with a real
/// nats-server and a consumer running in a host: listed, shown with the
/// message, replayed by the running consumer once the cause is fixed, kept
/// as history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_lists_shows_replays_and_skips_a_consumers_dead_letters() {
    use cqrs_tests::nats::{RecordWithdrawals, jetstream, relayed, unique};
    use cqrskit::nats::{Consumer, ConsumerOptions};
    use cqrskit::postgres::PostgresInbox;

    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    // Opened, then withdrawals of 30 and 13; the handler refuses 13.
    let stream = relayed(&db.store, &jetstream, &[30, 13]).await;
    let durable = unique("payouts");
    let handler = RecordWithdrawals::create(db.pool(), &db.schema).await;
    let refuse_13 = handler.refuse_13.clone();
    let options = ConsumerOptions::new(&stream, &durable).max_attempts(1);
    let consumer = Consumer::new(PostgresInbox::new(&db.store), jetstream, handler, options);
    let host = cqrskit::host::Host::new().service(consumer);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = json(&db.schema, &["consumers"]);
        if listed[0]["open_dead_letters"] == 1 && listed[0]["processed"] == 2 {
            break listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed[0]["consumer"], durable.as_str());

    let letters = json(&db.schema, &["consumer-dead-letters", &durable]);
    let letter = &letters[0];
    assert_eq!(letter["status"], "open");
    assert!(
        letter["reason"].as_str().unwrap_or("").contains("13 cents"),
        "{letter}"
    );
    let (source, id) = (
        letter["source"].as_str().expect("a source").to_owned(),
        letter["message_id"].as_str().expect("an id").to_owned(),
    );
    let shown = json(
        &db.schema,
        &["consumer-dead-letters", &durable, "show", &source, &id],
    );
    assert!(shown["body"].to_string().contains("13"), "{shown}");
    let unknown = admin(
        &db.schema,
        &["consumer-dead-letters", &durable, "skip", &source, "nope"],
    );
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));

    // Fixed: the running consumer replays it when asked.
    refuse_13.store(false, Ordering::SeqCst);
    let replay = admin(
        &db.schema,
        &[
            "consumer-dead-letters",
            &durable,
            "replay",
            &source,
            &id,
            "--timeout",
            "30",
        ],
    );
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(stdout(&replay).contains("replayed"), "{}", stdout(&replay));
    let cents: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT cents FROM {} ORDER BY cents",
        db.table("withdrawals_seen")
    ))
    .fetch_all(db.pool())
    .await
    .expect("withdrawals");
    assert_eq!(cents, [13, 30], "handled once each");

    let history = json(
        &db.schema,
        &["consumer-dead-letters", &durable, "list", "--all"],
    );
    assert_eq!(history[0]["status"], "replayed");
    assert_eq!(history[0]["replays"], 1);
    assert!(
        json(&db.schema, &["consumer-dead-letters", &durable])
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let nats_url = cqrs_tests::nats::nats_url();
    let listed = json(&db.schema, &["consumers", "--nats-url", &nats_url]);
    assert_eq!(
        (
            listed[0]["open_dead_letters"].as_u64(),
            listed[0]["closed_dead_letters"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // Its lag, from JetStream: all of its stream delivered and settled.
    assert_eq!(listed[0]["stream"], stream.as_str(), "{listed}");
    assert_eq!(listed[0]["pending_messages"], 0, "{listed}");
    assert_eq!(listed[0]["unacknowledged_messages"], 0, "{listed}");
    let table = stdout(&admin(&db.schema, &["consumers", "--nats-url", &nats_url]));
    assert!(
        table.contains("PENDING") && table.contains(&durable),
        "{table}"
    );
    let closed = admin(
        &db.schema,
        &["consumer-dead-letters", &durable, "skip", &source, &id],
    );
    assert_eq!(closed.status.code(), Some(1));
    assert!(
        stderr(&closed).contains("closed already"),
        "{}",
        stderr(&closed)
    );

    let _ = stop.send(());
    running.await.expect("join").expect("a clean stop");
    db.drop_schema().await;
}

/// A split consumer's partitions: listed with who reads each; the split is
/// not forgotten while an instance reads a partition, and is once none
/// does, so the consumer can be split another way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_lists_a_split_consumers_partitions_and_forgets_the_split_once_stopped() {
    use cqrskit::inbox::{PartitionKey, PartitionLeases};
    let db = TestStore::new().await;
    db.store.migrate().await.expect("migrate");
    let inbox = cqrskit::postgres::PostgresInbox::new(&db.store);
    assert_eq!(inbox.partitioning("shipping", 4).await.expect("split"), 4);
    let key = PartitionKey {
        consumer: "shipping",
        partition: 2,
        owner: "shipping@7",
    };
    let token = inbox
        .acquire(key, Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("free");

    let listed = json(&db.schema, &["consumer-partitions", "shipping"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[2]["owner"], "shipping@7");
    assert_eq!(listed[2]["partitions"], 4);
    assert!(listed[0]["owner"].is_null(), "{listed:?}");

    let refused = admin(&db.schema, &["consumer-partitions", "shipping", "reset"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("still running"),
        "{}",
        stderr(&refused)
    );

    inbox.release(key, token).await.expect("release");
    let reset = admin(&db.schema, &["consumer-partitions", "shipping", "reset"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(
        stdout(&reset).contains("forgot the 4 partitions"),
        "{}",
        stdout(&reset)
    );
    assert_eq!(
        json(&db.schema, &["consumer-partitions", "shipping"]),
        serde_json::json!([])
    );
    assert_eq!(
        inbox
            .partitioning("shipping", 8)
            .await
            .expect("split again"),
        8,
        "another count is recorded"
    );
}
