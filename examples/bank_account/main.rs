//! The bank account example.
//!
//! Run it with no set-up, on the in-memory store:
//!
//! ```text
//! cargo run --example bank_account
//! ```
//!
//! or on PostgreSQL, with the balance read model as a real table kept by the
//! projection runner (the example applies the migrations, in schema
//! `bank_example`):
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example bank_account
//! ```
//!
//! (`scripts/ensure-postgres` starts a local PostgreSQL and prints a URL.)
//!
//! It opens an account, deposits 100, withdraws 50, deposits 25 (balance 75),
//! has an overdraft refused, then reads the balance from the read model, looks
//! at the account as it was after its second event, and rebuilds the read
//! model from the global log. Each step is printed as it happens.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::balances::AccountBalances;
use cqrs_examples::bank_account::{
    AccountCommand, AccountSummaries, BankAccount, Deposit, GetAccountSummary, OpenAccount,
    Withdraw,
};
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner};
use cqrskit::{
    CommandError, CommandPipeline, InMemoryEventStore, Metadata, Position, QueryHandler, catch_up,
};

type Accounts = CommandPipeline<BankAccount>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => on_postgres(&url).await,
        Err(_) => in_memory().await,
    }
}

async fn in_memory() -> Result<(), Box<dyn Error>> {
    println!("== store: in memory (set DATABASE_URL to use PostgreSQL)");
    let store = Arc::new(InMemoryEventStore::new());
    let summaries = Arc::new(AccountSummaries::new());
    let accounts = Accounts::new(store.clone(), ()).with_projector(summaries.clone());
    let account = "acc-1";
    run_commands(&accounts, account).await?;

    println!("== read side");
    let summary = summaries
        .handle(GetAccountSummary {
            account_id: account.into(),
        })
        .await?
        .ok_or("the read model has no row for the account")?;
    println!(
        "read model: {} owns {} with balance {} after {} transactions",
        summary.owner, summary.account_id, summary.balance, summary.transactions
    );
    time_travel(&accounts, account).await?;

    let rebuilt = AccountSummaries::new();
    let checkpoint = catch_up(&*store, &rebuilt, Position::START, 100).await?;
    let rebuilt_balance = rebuilt.all().first().map_or(0, |row| row.balance);
    println!(
        "rebuilt the read model from the global log up to {checkpoint}: balance {rebuilt_balance}"
    );
    Ok(())
}

async fn on_postgres(url: &str) -> Result<(), Box<dyn Error>> {
    let store = PostgresEventStore::connect(url)
        .await?
        .with_schema("bank_example")?;
    store.migrate().await?;
    println!(
        "== store: PostgreSQL, schema {} (migrations applied)",
        store.schema().as_str()
    );
    let balances = Arc::new(AccountBalances::new(&store));
    let accounts = Accounts::new(Arc::new(store.clone()), ());
    // A fresh account per run: the events of earlier runs stay in the log.
    let account = format!("acc-{}", run_suffix());
    run_commands(&accounts, &account).await?;

    println!("== read side");
    let runner = ProjectionRunner::new(store.clone(), balances.clone());
    // The read model's table, made by the projector's #[setup] hook (the
    // runner would run it before its first batch anyway; reads below come
    // first).
    runner.setup().await?;
    if !runner.acquire_lease().await? {
        return Err("another process is running the account_balances projection".into());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let applied = runner.catch_up().await?;
        let row = balances.get(store.pool(), &account).await?;
        if let Some(row) = row.filter(|row| row.version == 4) {
            println!("projection runner applied {applied} events in its last pass");
            break row;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the read model did not catch up within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "read model (table bank_example.account_balances): {} owns {} with balance {}",
        row.owner, row.account_id, row.balance
    );
    let lag = runner.lag().await?;
    println!(
        "projection lag: {} events, checkpoint {}",
        lag.events, lag.checkpoint
    );
    time_travel(&accounts, &account).await?;
    runner.release_lease().await?;
    Ok(())
}

/// The story: 100 in, 50 out, 25 in, then an overdraft that is refused.
async fn run_commands(accounts: &Accounts, account: &str) -> Result<(), Box<dyn Error>> {
    let request = Metadata::new().with_entry("user", "teller-7");
    println!("== commands on account {account}");
    for command in [
        AccountCommand::Open(OpenAccount {
            owner: "Alice".into(),
        }),
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
        AccountCommand::Withdraw(Withdraw { amount: 500 }),
    ] {
        print!("{command:?}: ");
        match accounts
            .execute_with(account, command, request.clone())
            .await
        {
            Ok(outcome) => {
                for event in &outcome.events {
                    print!(
                        "stored {} as version {} at position {}",
                        event.event_type, event.version, event.position
                    );
                }
                let balance = accounts.load(account).await?.state.balance;
                println!(" -> balance {balance}");
            }
            Err(CommandError::Rejected(reason)) => {
                let version = accounts
                    .store()
                    .stream_version(&Accounts::stream_id(account))
                    .await?;
                println!("rejected: {reason} (nothing stored, stream still at version {version})");
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

async fn time_travel(accounts: &Accounts, account: &str) -> Result<(), Box<dyn Error>> {
    let then = accounts.load_at(account, 2).await?;
    println!(
        "time travel: at version {} the balance was {}",
        then.version, then.state.balance
    );
    Ok(())
}

/// A suffix unique to this run, from the clock.
fn run_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}
