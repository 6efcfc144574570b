use std::sync::Arc;

use cqrs_core::testing::AggregateFixture;
use cqrs_core::{CommandPipeline, InMemoryEventStore, Position, QueryHandler, catch_up};

use super::*;

fn opened() -> AccountEvent {
    AccountEvent::AccountOpened(AccountOpened {
        owner: "Alice".into(),
    })
}

#[tokio::test]
async fn opening_an_account_records_its_owner() {
    AggregateFixture::<BankAccount>::new(())
        .when(AccountCommand::Open(OpenAccount {
            owner: "Alice".into(),
        }))
        .await
        .then_expect_events([opened()]);
}

#[tokio::test]
async fn an_account_cannot_be_opened_twice() {
    AggregateFixture::<BankAccount>::new(())
        .given([opened()])
        .when(AccountCommand::Open(OpenAccount {
            owner: "Bob".into(),
        }))
        .await
        .then_expect_error(AccountError::AlreadyOpen);
}

#[tokio::test]
async fn deposits_and_withdrawals_move_the_balance() {
    AggregateFixture::<BankAccount>::new(())
        .given([
            opened(),
            AccountEvent::DepositMade(DepositMade { amount: 100 }),
            AccountEvent::WithdrawalMade(WithdrawalMade { amount: 50 }),
        ])
        .when(AccountCommand::Deposit(Deposit { amount: 25 }))
        .await
        .then_expect_events([AccountEvent::DepositMade(DepositMade { amount: 25 })])
        .then_expect_state(|account| assert_eq!(account.balance, 75));
}

#[tokio::test]
async fn an_overdraft_is_refused() {
    AggregateFixture::<BankAccount>::new(())
        .given([
            opened(),
            AccountEvent::DepositMade(DepositMade { amount: 75 }),
        ])
        .when(AccountCommand::Withdraw(Withdraw { amount: 76 }))
        .await
        .then_expect_error(AccountError::InsufficientFunds {
            balance: 75,
            requested: 76,
        });
}

#[tokio::test]
async fn money_cannot_move_on_an_account_nobody_opened() {
    AggregateFixture::<BankAccount>::new(())
        .when(AccountCommand::Deposit(Deposit { amount: 10 }))
        .await
        .then_expect_error(AccountError::NotOpen);
}

#[tokio::test]
async fn zero_amounts_are_refused() {
    AggregateFixture::<BankAccount>::new(())
        .given([opened()])
        .when(AccountCommand::Withdraw(Withdraw { amount: 0 }))
        .await
        .then_expect_error_message("the amount must be positive");
}

#[tokio::test]
async fn the_read_model_follows_commands_and_rebuilds_from_the_log() {
    let store = Arc::new(InMemoryEventStore::new());
    let summaries = Arc::new(AccountSummaries::new());
    let accounts =
        CommandPipeline::<BankAccount>::new(store.clone(), ()).with_projector(summaries.clone());

    for command in [
        AccountCommand::Open(OpenAccount {
            owner: "Alice".into(),
        }),
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        let outcome = accounts.execute("acc-1", command).await.expect("accepted");
        assert!(outcome.projector_failures.is_empty());
    }
    let live = summaries
        .handle(GetAccountSummary {
            account_id: "acc-1".into(),
        })
        .await
        .expect("infallible")
        .expect("account is in the read model");
    assert_eq!(
        (live.owner.as_str(), live.balance, live.transactions),
        ("Alice", 75, 3)
    );

    let rebuilt = AccountSummaries::new();
    catch_up(&*store, &rebuilt, Position::START, 2)
        .await
        .expect("replays");
    assert_eq!(rebuilt.all(), vec![live]);
}
