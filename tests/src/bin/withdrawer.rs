//! Withdrawals from shared bank accounts in a process of its own, for the
//! test that runs several at once (`tests/tests/command_processes.rs`).
//!
//! Configured by environment: `DATABASE_URL`, `SCHEMA`, `ACCOUNTS` (ids
//! `acc-0` ...), `WITHDRAWALS`, `AMOUNT`, `START_AT_MS` (a Unix time in
//! milliseconds to start at, so that the processes race). Each conflict is
//! retried after a fresh load. Prints `ok=<n> rejected=<n> conflicts=<n>`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cqrs_examples::bank_account::{BankAccount, Withdraw};
use cqrs_tests::env::number;
use cqrskit::postgres::PostgresEventStore;
use cqrskit::{CommandError, CommandPipeline};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let store = PostgresEventStore::connect(&url)
        .await
        .expect("connect")
        .with_schema(&std::env::var("SCHEMA").expect("SCHEMA"))
        .expect("schema");
    let accounts = CommandPipeline::<BankAccount>::new(Arc::new(store), ());
    let start = UNIX_EPOCH + Duration::from_millis(number("START_AT_MS"));
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let (count, amount) = (number("ACCOUNTS"), number("AMOUNT"));
    let (mut ok, mut rejected, mut conflicts) = (0, 0, 0);
    for n in 0..number("WITHDRAWALS") {
        let account = format!("acc-{}", (n + u64::from(std::process::id())) % count);
        loop {
            match accounts.execute(&account, Withdraw { amount }).await {
                Ok(_) => ok += 1,
                Err(CommandError::Rejected(_)) => rejected += 1,
                Err(CommandError::Conflict(_)) => {
                    conflicts += 1;
                    continue;
                }
                Err(error) => panic!("withdrawing from {account}: {error}"),
            }
            break;
        }
    }
    println!("ok={ok} rejected={rejected} conflicts={conflicts}");
}
