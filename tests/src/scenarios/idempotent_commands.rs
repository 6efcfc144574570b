//! Commands with an id are applied at most once: carrying the same command
//! id out again (after a lost answer, a double submit, a redelivered event)
//! returns the first outcome and appends nothing.

use cqrs_examples::bank_account::{
    AccountCommand, AccountError, AccountEvent, BankAccount, Deposit, OpenAccount, Withdraw,
};
use cqrskit::{CommandError, CommandPipeline, EventEnvelope, Metadata, StoreError, command_id};
use uuid::Uuid;

use super::Store;

type Accounts = CommandPipeline<BankAccount>;

async fn opened(store: &Store, id: &str) -> Accounts {
    let accounts = Accounts::new(store.clone(), ());
    accounts
        .execute(id, AccountCommand::Open(OpenAccount { owner: "A".into() }))
        .await
        .expect("open");
    accounts
}

async fn withdrawals(store: &Store, id: &str) -> usize {
    store
        .read_stream(&Accounts::stream_id(id), 1, 100)
        .await
        .expect("read")
        .iter()
        .filter(|event| event.event_type == "WithdrawalMade")
        .count()
}

/// The second execution of a command id returns the first one's events and
/// version, marked `already_executed`, even when deciding again would now
/// be refused (the balance no longer covers the withdrawal); nothing more
/// is stored. The event ids are the ones derived from the command id.
pub async fn executing_a_command_id_again_returns_the_first_outcome(store: Store) {
    let accounts = opened(&store, "once").await;
    accounts
        .execute("once", AccountCommand::Deposit(Deposit { amount: 100 }))
        .await
        .expect("deposit");
    let command = Uuid::now_v7();
    let withdraw = || AccountCommand::Withdraw(Withdraw { amount: 60 });
    let first = accounts
        .execute_once(command, "once", withdraw(), Metadata::new())
        .await
        .expect("first execution");
    assert!(!first.already_executed);
    assert_eq!(first.command_id, command);
    assert_eq!(first.events[0].event_id, command_id::event_id(command, 0));

    let again = accounts
        .execute_once(command, "once", withdraw(), Metadata::new())
        .await
        .expect("the same command id again");
    assert!(again.already_executed);
    assert_eq!(again.version, first.version);
    let ids = |events: &[EventEnvelope<AccountEvent>]| {
        events
            .iter()
            .map(|event| event.event_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again.events), ids(&first.events));
    assert_eq!(again.events[0].payload, first.events[0].payload);
    assert_eq!(withdrawals(&store, "once").await, 1);
    assert_eq!(accounts.load("once").await.expect("load").state.balance, 40);

    // A fresh id is a new command, decided again (and refused now).
    let refused = accounts
        .execute_once(Uuid::now_v7(), "once", withdraw(), Metadata::new())
        .await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(
            AccountError::InsufficientFunds { .. }
        ))
    ));

    // A command id belongs to one aggregate.
    let elsewhere = opened(&store, "other").await;
    match elsewhere
        .execute_once(command, "other", withdraw(), Metadata::new())
        .await
    {
        Err(CommandError::Store(StoreError::EventIdReused { .. })) => {}
        other => panic!("a command id reused for another aggregate must be refused, got {other:?}"),
    }
}

/// Two executions of one command id racing: one appends, the other returns
/// its outcome; the deposit is stored once.
pub async fn racing_executions_of_one_command_id_store_it_once(store: Store) {
    let accounts = std::sync::Arc::new(opened(&store, "raced").await);
    let command = Uuid::now_v7();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let accounts = accounts.clone();
        tasks.spawn(async move {
            accounts
                .execute_once(
                    command,
                    "raced",
                    AccountCommand::Deposit(Deposit { amount: 7 }),
                    Metadata::new(),
                )
                .await
        });
    }
    let mut fresh = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("task") {
            Ok(outcome) => fresh += usize::from(!outcome.already_executed),
            // Losing the race for the version before the winner's events
            // are visible is an honest conflict; nothing was stored by it.
            Err(CommandError::Conflict(_)) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one execution appended");
    assert_eq!(accounts.load("raced").await.expect("load").state.balance, 7);
}

/// A process manager that handles the same event twice (a crash before its
/// checkpoint moved, a redelivery) issues its command once: the command id
/// derives from the event, the target and the command type.
pub async fn a_command_caused_by_an_event_is_applied_once_per_event(store: Store) {
    let accounts = opened(&store, "pm").await;
    let cause = accounts
        .execute("pm", AccountCommand::Deposit(Deposit { amount: 5 }))
        .await
        .expect("deposit")
        .events
        .remove(0);
    let target = opened(&store, "pm-target").await;
    for _ in 0..2 {
        target
            .execute_caused_by(
                "pm-target",
                AccountCommand::Deposit(Deposit { amount: 1 }),
                &cause,
            )
            .await
            .expect("the process manager's command");
    }
    assert_eq!(
        target.load("pm-target").await.expect("load").state.balance,
        1
    );
    // Another event causes another command.
    let second_cause = accounts
        .execute("pm", AccountCommand::Deposit(Deposit { amount: 5 }))
        .await
        .expect("deposit")
        .events
        .remove(0);
    target
        .execute_caused_by(
            "pm-target",
            AccountCommand::Deposit(Deposit { amount: 1 }),
            &second_cause,
        )
        .await
        .expect("the next command");
    assert_eq!(
        target.load("pm-target").await.expect("load").state.balance,
        2
    );
}
