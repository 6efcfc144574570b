//! In-process projectors over the store: a failing one leaves the events
//! stored, and catch-up hands each only the types it declares.

use super::*;

/// Records what it saw, and fails on deposits above a limit. It handles
/// deposits only, so the macro declares exactly that type.
struct Picky {
    seen: Mutex<Vec<String>>,
}

#[projector(event = AccountEvent)]
impl Picky {
    #[project]
    fn deposited(
        &self,
        event: &DepositMade,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        if event.amount > 1000 {
            return Err(format!("deposit {} is too large", event.amount).into());
        }
        self.seen
            .lock()
            .expect("lock")
            .push(envelope.event_type.clone());
        Ok(())
    }
}

/// An in-process projector's failure does not undo the stored events; it is
/// reported in the outcome with the event it failed on.
pub async fn projector_failure_is_reported_and_the_events_stay_stored(store: Store) {
    let picky = Arc::new(Picky {
        seen: Mutex::new(Vec::new()),
    });
    let accounts = Accounts::new(store.clone(), ()).with_projector(picky.clone());
    let outcome = accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    assert!(outcome.projector_failures.is_empty());
    let outcome = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 5000 }))
        .await
        .expect("the command itself succeeds");
    assert_eq!(outcome.projector_failures.len(), 1);
    let failure = &outcome.projector_failures[0];
    assert_eq!((failure.projector.as_str(), failure.version), ("picky", 2));
    assert_eq!(failure.event_id, outcome.events[0].event_id);
    assert!(
        failure.to_string().contains("deposit 5000 is too large"),
        "{failure}"
    );
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        2
    );
    // The projector declared DepositMade only: it never saw AccountOpened.
    assert!(picky.seen.lock().expect("lock").is_empty());
}

/// `catch_up` asks the store for the projector's declared types only, and
/// stops at a failing event with the checkpoint before it.
pub async fn catch_up_delivers_only_declared_event_types(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[10, 20]).await;
    accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 5 }))
        .await
        .expect("withdraw");
    accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 2000 }))
        .await
        .expect("deposit");

    settled(&store, 5).await;
    assert_eq!(Picky::EVENT_TYPES, ["DepositMade"]);
    let picky = Picky {
        seen: Mutex::new(Vec::new()),
    };
    let result = catch_up(&*store, &picky, Position::START, 1).await;
    let Err(StoreError::Projection {
        source,
        checkpoint: Some(checkpoint),
    }) = result
    else {
        panic!("expected the projector to stop at the large deposit, got {result:?}");
    };
    assert_eq!(source.version, 5);
    assert_eq!(
        *picky.seen.lock().expect("lock"),
        ["DepositMade", "DepositMade"]
    );
    let third_deposit = store
        .read_stream(&Accounts::stream_id("acc"), 3, 1)
        .await
        .expect("read");
    assert_eq!(checkpoint, third_deposit[0].position);
}
