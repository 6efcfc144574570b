use std::sync::Arc;

use cqrskit::testing::AggregateFixture;
use cqrskit::{
    CommandError, CommandPipeline, EventStore, ExpectedVersion, InMemoryEventStore, Metadata,
    NewEvent, Position, QueryHandler, catch_up,
};

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

#[tokio::test]
async fn a_deposit_that_would_overflow_the_balance_is_refused() {
    AggregateFixture::<BankAccount>::new(())
        .given([
            opened(),
            AccountEvent::DepositMade(DepositMade {
                amount: MAX_BALANCE - 10,
            }),
        ])
        .when(AccountCommand::Deposit(Deposit { amount: 11 }))
        .await
        .then_expect_error(AccountError::BalanceOverflow {
            balance: MAX_BALANCE - 10,
            amount: 11,
        })
        .then_expect_state(|account| assert_eq!(account.balance, MAX_BALANCE - 10));
    // Up to the bound is accepted.
    AggregateFixture::<BankAccount>::new(())
        .given([opened()])
        .when(Deposit {
            amount: MAX_BALANCE,
        })
        .await
        .then_expect_events([DepositMade {
            amount: MAX_BALANCE,
        }]);
}

/// 2^63 cents, one more than a bigint holds, is refused at the command:
/// no read model ever meets a balance it cannot store.
#[tokio::test]
async fn a_deposit_past_what_a_read_model_can_hold_is_refused() {
    AggregateFixture::<BankAccount>::new(())
        .given([opened()])
        .when(Deposit { amount: 1 << 63 })
        .await
        .then_expect_error(AccountError::BalanceOverflow {
            balance: 0,
            amount: 1 << 63,
        });
}

#[tokio::test]
async fn an_overflowing_deposit_stores_nothing_and_the_account_still_loads() {
    let accounts = CommandPipeline::<BankAccount>::new(Arc::new(InMemoryEventStore::new()), ());
    for command in [
        AccountCommand::Open(OpenAccount {
            owner: "Alice".into(),
        }),
        AccountCommand::Deposit(Deposit {
            amount: MAX_BALANCE,
        }),
    ] {
        accounts.execute("acc-1", command).await.expect("accepted");
    }

    let refused = accounts.execute("acc-1", Deposit { amount: 1 }).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Rejected(AccountError::BalanceOverflow {
                balance: MAX_BALANCE,
                amount: 1
            }))
        ),
        "{refused:?}"
    );
    let version = accounts
        .store()
        .stream_version(&CommandPipeline::<BankAccount>::stream_id("acc-1"))
        .await
        .expect("version");
    assert_eq!(version, 2, "nothing stored");
    let loaded = accounts.load("acc-1").await.expect("loads");
    assert_eq!(loaded.state.balance, MAX_BALANCE);
}

#[tokio::test]
async fn stored_events_beyond_the_balance_range_load_without_panicking() {
    // Events written by other code than these handlers (an import, an older
    // version without the checks): the aggregate still loads.
    AggregateFixture::<BankAccount>::new(())
        .given([
            opened(),
            AccountEvent::WithdrawalMade(WithdrawalMade { amount: 5 }),
        ])
        .when(Deposit { amount: 1 })
        .await
        .then_expect_events([DepositMade { amount: 1 }])
        .then_expect_state(|account| assert_eq!(account.balance, 1));
    AggregateFixture::<BankAccount>::new(())
        .given([
            opened(),
            AccountEvent::DepositMade(DepositMade { amount: u64::MAX }),
            AccountEvent::DepositMade(DepositMade { amount: 5 }),
        ])
        .when(Withdraw { amount: 1 })
        .await
        .then_expect_events([WithdrawalMade { amount: 1 }])
        .then_expect_state(|account| assert_eq!(account.balance, u64::MAX - 1));
}

#[tokio::test]
async fn the_read_model_reports_a_balance_it_cannot_hold_instead_of_wrapping() {
    let store = InMemoryEventStore::new();
    let events = [
        opened(),
        AccountEvent::DepositMade(DepositMade { amount: u64::MAX }),
        AccountEvent::DepositMade(DepositMade { amount: 1 }),
    ]
    .iter()
    .map(|event| NewEvent::from_event(event, Metadata::new()).expect("encodes"))
    .collect();
    store
        .append(
            &CommandPipeline::<BankAccount>::stream_id("acc-1"),
            ExpectedVersion::NoStream,
            events,
        )
        .await
        .expect("appended");

    let summaries = AccountSummaries::new();
    let failure = catch_up(&store, &summaries, Position::START, 10)
        .await
        .expect_err("the third event does not fit");
    assert!(failure.to_string().contains("overflows"), "{failure}");
    // The row stays as the last event that fitted left it.
    assert_eq!(summaries.all()[0].balance, u64::MAX);
}

/// The balance read model against PostgreSQL, with the test helpers
/// `docs/testing.md` shows: a store in a schema of its own, and the
/// projection run until it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_table_follows_the_account() {
    use cqrskit::postgres::ProjectionRunner;
    use cqrskit::postgres::testing::{TestStore, caught_up};

    use super::balances::AccountBalances;

    let db = TestStore::new().await;
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    accounts
        .execute(
            "acc-1",
            OpenAccount {
                owner: "Alice".into(),
            },
        )
        .await
        .expect("open");
    accounts
        .execute("acc-1", Deposit { amount: 100 })
        .await
        .expect("deposit");
    accounts
        .execute("acc-1", Withdraw { amount: 30 })
        .await
        .expect("withdraw");

    let balances = Arc::new(AccountBalances::new(&db.store));
    let runner = ProjectionRunner::new(db.store.clone(), balances.clone());
    assert_eq!(caught_up(&runner).await, 3);

    let row = balances
        .get(db.pool(), "acc-1")
        .await
        .expect("query")
        .expect("a row for the account");
    assert_eq!(
        (row.owner.as_str(), row.balance, row.version),
        ("Alice", 70, 3)
    );
    db.drop_schema().await;
}
