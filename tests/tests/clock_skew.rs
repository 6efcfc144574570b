//! Runners on hosts whose clocks disagree with the database's, as separate
//! processes under libfaketime: time shared between instances is the
//! database's, so a clock ahead delivers nothing early and a clock behind
//! keeps its lease.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrs_examples::ecommerce::{CancelUnpaidOrder, CreateOrder, Order, OrderLine, PAYMENT_TIMEOUT};
use cqrs_tests::faketime::shifted;
use cqrs_tests::ledger::{Ledger, fold};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::chrono::{DateTime, Utc};
use cqrskit::deadline::{Deadline, DeadlineState, DeadlineStore};
use cqrskit::{Aggregate, CommandPipeline, StreamId};

/// A deadline runner on a host an hour ahead of the database: of a deadline
/// due now and one due in 30 minutes, it delivers the first only (with the
/// runner's own clock deciding, both would be due).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_clock_is_an_hour_ahead_delivers_nothing_early() {
    let db = TestStore::new().await;
    let orders = CommandPipeline::<Order>::new(db.shared(), ());
    let deadlines = db.store.deadlines();
    let now = Utc::now();
    let mut scheduled = Vec::new();
    for (id, due_in) in [("due", -1), ("later", 30 * 60)] {
        let create = CreateOrder {
            customer_id: "dana".into(),
            lines: vec![OrderLine {
                sku: "tea".into(),
                quantity: 1,
                unit_price: 450,
            }],
        };
        orders.execute(id, create).await.expect("create");
        let cancel = CancelUnpaidOrder {
            reason: "unpaid".into(),
        };
        let deadline = Deadline::new(
            PAYMENT_TIMEOUT,
            StreamId::new(<Order as Aggregate>::TYPE, id),
            now + cqrskit::chrono::Duration::seconds(due_in),
            &cancel,
        )
        .expect("a deadline");
        assert!(deadlines.schedule(&deadline).await.expect("schedule"));
        scheduled.push(deadline);
    }

    let output = shifted(
        Command::new(env!("CARGO_BIN_EXE_deadline_runner"))
            .env("DATABASE_URL", database_url())
            .env("SCHEMA", &db.schema)
            .stderr(Stdio::inherit()),
        "+1h",
    )
    .output()
    .expect("run the deadline runner");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let mut lines = printed.lines();
    let its_now: DateTime<Utc> = lines
        .next()
        .and_then(|line| DateTime::parse_from_rfc3339(line).ok())
        .expect("the runner's time")
        .into();
    let ahead = its_now - Utc::now();
    assert!(
        ahead > cqrskit::chrono::Duration::minutes(59),
        "the runner's clock is {ahead} ahead: libfaketime did not take"
    );
    let delivered: Vec<&str> = lines.collect();
    assert_eq!(delivered, [scheduled[0].id.to_string()]);
    assert_eq!(
        deadlines.state(scheduled[1].id).await.expect("state"),
        Some(DeadlineState::Pending),
        "the deadline due in 30 minutes waits"
    );
    db.drop_schema().await;
}

/// A projection runner on a host an hour behind the database, with a lease
/// of two seconds, applying a stream of deposits for five seconds: it
/// renews its lease in time (half a lease after the database granted it,
/// by its own monotonic clock), so it is taken once and never lapses; with
/// its wall clock against the database's expiry it saw an hour left and
/// let the lease lapse every two seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_runner_whose_clock_is_an_hour_behind_keeps_its_lease() {
    let db = TestStore::new().await;
    let ledger = Ledger::create(&db, "ledger").await;
    let accounts = Arc::new(CommandPipeline::<BankAccount>::new(db.shared(), ()));
    accounts
        .execute(
            "acc",
            OpenAccount {
                owner: "Eve".into(),
            },
        )
        .await
        .expect("open");
    let mut child = shifted(
        Command::new(env!("CARGO_BIN_EXE_projection_runner"))
            .env("DATABASE_URL", database_url())
            .env("SCHEMA", &db.schema)
            .env("OWNER", "behind")
            .env("LEASE_MS", "2000")
            .env("SLOW_AMOUNT", "0")
            .env("SLOW_MS", "0")
            .stdout(Stdio::null()),
        "-1h",
    )
    .spawn()
    .expect("start a runner");
    let started = std::time::Instant::now();
    let mut deposits = 0;
    while started.elapsed() < Duration::from_secs(5) {
        accounts
            .execute("acc", Deposit { amount: 1 })
            .await
            .expect("deposit");
        deposits += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ledger.applied(db.pool()).await < deposits + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner fell behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // language=SQL
    let token: i64 = sqlx::query_scalar(&format!(
        "SELECT fencing_token FROM {} WHERE name = 'ledger'",
        db.table("projections")
    ))
    .fetch_one(db.pool())
    .await
    .expect("the lease");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        token, 1,
        "the lease was taken {token} times in five seconds"
    );
    assert_eq!(ledger.balances(db.pool()).await, fold(&db.store).await);
    db.drop_schema().await;
}
