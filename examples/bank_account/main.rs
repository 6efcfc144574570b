//! The bank account example, on the in-memory event store.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example bank_account
//! ```
//!
//! It opens an account, deposits 100, withdraws 50, deposits 25 (balance 75),
//! has an overdraft refused, then reads the balance from the read model, looks
//! at the account as it was after its second event, and rebuilds the read
//! model from the global log. Each step is printed as it happens. No set-up is
//! needed.

use std::error::Error;
use std::sync::Arc;

use cqrs_core::{
    CommandError, CommandPipeline, EventStore, InMemoryEventStore, Metadata, Position,
    QueryHandler, catch_up,
};
use cqrs_examples::bank_account::{
    AccountCommand, AccountSummaries, BankAccount, Deposit, GetAccountSummary, OpenAccount,
    Withdraw,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = Arc::new(InMemoryEventStore::new());
    let summaries = Arc::new(AccountSummaries::new());
    let accounts =
        CommandPipeline::<BankAccount>::new(store.clone(), ()).with_projector(summaries.clone());

    let account = "acc-1";
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
                let version = store
                    .stream_version(&CommandPipeline::<BankAccount>::stream_id(account))
                    .await?;
                println!("rejected: {reason} (nothing stored, stream still at version {version})");
            }
            Err(other) => return Err(other.into()),
        }
    }

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

    let then = accounts.load_at(account, 2).await?;
    println!(
        "time travel: at version {} the balance was {}",
        then.version, then.state.balance
    );

    let rebuilt = AccountSummaries::new();
    let checkpoint = catch_up(&*store, &rebuilt, Position::START, 100).await?;
    let rebuilt_balance = rebuilt.all().first().map_or(0, |row| row.balance);
    println!(
        "rebuilt the read model from the global log up to {checkpoint}: balance {rebuilt_balance}"
    );
    Ok(())
}
