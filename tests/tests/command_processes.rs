//! Commands from several OS processes on the same aggregates at once: the
//! append's version check is the only coordination, and it is enough.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cqrs_examples::bank_account::{AccountEvent, BankAccount, Deposit, OpenAccount};
use cqrs_tests::postgres::{TestStore, database_url};
use cqrskit::{CommandPipeline, EventStore, LogFilter, Position};

const ACCOUNTS: u64 = 5;
const PROCESSES: usize = 4;
const WITHDRAWALS: u64 = 60;
const AMOUNT: u64 = 7;

/// One process's report: withdrawals made, refused, and conflicts retried.
fn report(line: &str) -> (u64, u64, u64) {
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("ok"), field("rejected"), field("conflicts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_racing_from_several_processes_never_overdraw_nor_lose_an_update() {
    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    for n in 0..ACCOUNTS {
        let id = format!("acc-{n}");
        accounts
            .execute(&id, OpenAccount { owner: id.clone() })
            .await
            .expect("open");
        accounts
            .execute(&id, Deposit { amount: 100 })
            .await
            .expect("deposit");
    }

    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        + Duration::from_millis(1500);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_withdrawer"))
                .env("DATABASE_URL", database_url())
                .env("SCHEMA", &db.schema)
                .env("ACCOUNTS", ACCOUNTS.to_string())
                .env("WITHDRAWALS", WITHDRAWALS.to_string())
                .env("AMOUNT", AMOUNT.to_string())
                .env("START_AT_MS", start_at.as_millis().to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a withdrawer")
        })
        .collect();
    let reports: Vec<_> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().expect("wait");
                assert!(output.status.success(), "a withdrawer failed");
                report(&String::from_utf8_lossy(&output.stdout))
            })
            .collect()
    })
    .await
    .expect("join");

    let ok: u64 = reports.iter().map(|report| report.0).sum();
    let rejected: u64 = reports.iter().map(|report| report.1).sum();
    let conflicts: u64 = reports.iter().map(|report| report.2).sum();
    assert_eq!(ok + rejected, PROCESSES as u64 * WITHDRAWALS);
    assert!(conflicts > 0, "the processes never raced: {reports:?}");

    // Every withdrawal reported made is stored once, and no more.
    let log = db
        .store
        .read_log(Position::START, &LogFilter::all(), 10_000)
        .await
        .expect("the log");
    let stored = log
        .iter()
        .filter(|event| event.event_type == "WithdrawalMade")
        .count();
    assert_eq!(stored as u64, ok, "withdrawals stored and reported agree");
    // Each account gave what it had, in whole withdrawals, and no more.
    for n in 0..ACCOUNTS {
        let id = format!("acc-{n}");
        let loaded = accounts.load(&id).await.expect("load");
        let balance = loaded.state.balance;
        assert!(
            balance < AMOUNT,
            "{id} kept {balance}: a withdrawal was refused wrongly"
        );
        let withdrawn = log
            .iter()
            .filter(|event| event.stream.aggregate_id == id)
            .filter_map(|event| event.clone().decode::<AccountEvent>().ok())
            .filter(|event| matches!(event.payload, AccountEvent::WithdrawalMade(_)))
            .count() as u64;
        assert_eq!(100 - withdrawn * AMOUNT, balance, "{id}: no lost update");
    }
    db.drop_schema().await;
}
