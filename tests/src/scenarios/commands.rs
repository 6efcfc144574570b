//! The command pipeline on the store: the bank account's story, rejections,
//! time travel, metadata, retries and conflicts, events that no longer
//! decode, and the state cache beside another writer.

use super::*;

/// The bank account story from the guide: 100 in, 50 out, 25 in leaves 75.
pub async fn pipeline_runs_the_bank_account_story(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let open = AccountCommand::Open(OpenAccount {
        owner: "Alice".into(),
    });
    accounts.execute("acc", open).await.expect("open");
    for command in [
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        accounts.execute("acc", command).await.expect("accepted");
    }
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!((loaded.state.balance, loaded.version), (75, 4));
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 1, 10)
        .await
        .expect("read");
    let types: Vec<_> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "DepositMade",
            "WithdrawalMade",
            "DepositMade"
        ]
    );
}

/// A command the aggregate refuses surfaces its domain error and stores nothing.
pub async fn rejected_command_stores_nothing(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let result = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 5 }))
        .await;
    assert!(
        matches!(result, Err(CommandError::Rejected(AccountError::NotOpen))),
        "{result:?}"
    );
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    let result = accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 1 }))
        .await;
    match result {
        Err(CommandError::Rejected(error)) => assert_eq!(
            error,
            AccountError::InsufficientFunds {
                balance: 0,
                requested: 1
            }
        ),
        other => panic!("expected an overdraft refusal, got {other:?}"),
    }
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        1
    );
}

/// Time travel: the state right after version N, whatever came later.
pub async fn load_at_returns_the_state_as_of_a_version(store: Store) {
    let accounts = Accounts::new(store.clone(), ())
        .with_options(PipelineOptions::default().snapshots(SnapshotPolicy::Every(2)));
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    for command in [
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        accounts.execute("acc", command).await.expect("accepted");
    }
    let balances: Vec<u64> = {
        let mut balances = Vec::new();
        for version in 0..=4 {
            let loaded = accounts.load_at("acc", version).await.expect("load_at");
            assert_eq!(loaded.version, version);
            balances.push(loaded.state.balance);
        }
        balances
    };
    assert_eq!(balances, [0, 0, 100, 50, 75]);
    assert!(
        accounts
            .load_at("acc", 0)
            .await
            .expect("v0")
            .state
            .owner
            .is_none()
    );
    match accounts.load_at("acc", 5).await {
        Err(StoreError::VersionNotFound {
            requested, current, ..
        }) => assert_eq!((requested, current), (5, 4)),
        other => panic!("expected VersionNotFound, got {other:?}"),
    }
}

/// `load_as_of` gives the state after the events recorded at or before a
/// time: before the first event, the default state; at each event's
/// recording time, the state right after it; in between, the same.
pub async fn load_as_of_returns_the_state_at_a_time(store: Store) {
    let accounts = Accounts::new(store.clone(), ())
        .with_options(PipelineOptions::default().snapshots(SnapshotPolicy::Every(2)));
    let mut times = Vec::new();
    for command in [
        AccountCommand::Open(OpenAccount { owner: "A".into() }),
        AccountCommand::Deposit(Deposit { amount: 100 }),
        AccountCommand::Withdraw(Withdraw { amount: 50 }),
        AccountCommand::Deposit(Deposit { amount: 25 }),
    ] {
        let outcome = accounts.execute("acc", command).await.expect("accepted");
        times.push(outcome.events[0].recorded_at);
        // Distinct recording times, even at the store's microseconds.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let before = times[0] - chrono::Duration::milliseconds(1);
    let empty = accounts.load_as_of("acc", before).await.expect("as of");
    assert_eq!((empty.version, empty.state.owner), (0, None));
    let mut balances = Vec::new();
    for (index, at) in times.iter().enumerate() {
        let loaded = accounts.load_as_of("acc", *at).await.expect("as of");
        assert_eq!(
            loaded.version,
            index as u64 + 1,
            "as of event {index}'s time"
        );
        let between = *at + chrono::Duration::microseconds(500);
        let later = accounts.load_as_of("acc", between).await.expect("as of");
        assert_eq!(later.version, loaded.version, "between events");
        balances.push(loaded.state.balance);
    }
    assert_eq!(balances, [0, 100, 50, 75]);
    let now = accounts
        .load_as_of("acc", chrono::Utc::now())
        .await
        .expect("now");
    assert_eq!(now.version, 4);
}

/// Correlation and causation ids and free-form entries given with a command
/// reach every event it stores; without them, the command's events share a
/// fresh correlation id.
pub async fn command_metadata_reaches_every_stored_event(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    let correlation = Uuid::now_v7();
    let cause = Uuid::now_v7();
    let given = Metadata::new()
        .with_correlation_id(correlation)
        .with_causation_id(cause)
        .with_entry("user", "alice");
    let outcome = accounts
        .execute_with(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
            given.clone(),
        )
        .await
        .expect("open");
    assert_eq!(outcome.events[0].metadata, given);
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 1, 1)
        .await
        .expect("read");
    assert_eq!(stored[0].metadata, given);

    // A follow-up caused by that event carries the chain on.
    let follow_up = Metadata::caused_by(&outcome.events[0]);
    accounts
        .execute_with(
            "acc",
            AccountCommand::Deposit(Deposit { amount: 5 }),
            follow_up,
        )
        .await
        .expect("deposit");
    let stored = store
        .read_stream(&Accounts::stream_id("acc"), 2, 1)
        .await
        .expect("read");
    assert_eq!(stored[0].metadata.correlation_id, Some(correlation));
    assert_eq!(
        stored[0].metadata.causation_id,
        Some(outcome.events[0].event_id)
    );

    let plain = accounts
        .execute(
            "other",
            AccountCommand::Open(OpenAccount { owner: "B".into() }),
        )
        .await;
    let plain = plain.expect("open");
    let fresh = plain.events[0]
        .metadata
        .correlation_id
        .expect("a correlation id is filled in");
    assert_ne!(fresh, correlation);
}

/// Concurrent withdrawals on one account, with retries on: every command is
/// judged against the newest state, so the balance never goes negative and
/// no deposit is lost.
pub async fn retries_keep_concurrent_withdrawals_within_the_balance(store: Store) {
    let accounts = Arc::new(
        Accounts::new(store.clone(), ())
            .with_options(PipelineOptions::default().retry(RetryPolicy::retries(100))),
    );
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 100 }))
        .await
        .expect("deposit");

    let mut tasks = Vec::new();
    for task in 0..20_u64 {
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let command = if task % 4 == 0 {
                AccountCommand::Deposit(Deposit { amount: 10 })
            } else {
                AccountCommand::Withdraw(Withdraw { amount: 15 })
            };
            (command.clone(), accounts.execute("acc", command).await)
        }));
    }
    let mut expected_balance: i64 = 100;
    for task in tasks {
        match task.await.expect("task") {
            (AccountCommand::Deposit(Deposit { amount }), Ok(_)) => {
                expected_balance += amount as i64
            }
            (AccountCommand::Withdraw(Withdraw { amount }), Ok(_)) => {
                expected_balance -= amount as i64
            }
            (_, Err(CommandError::Rejected(AccountError::InsufficientFunds { .. }))) => {}
            (command, Err(error)) => panic!("{command:?} failed: {error}"),
            (command, Ok(_)) => panic!("unexpected command {command:?}"),
        }
    }
    let events = stored_account_events(&store, "acc").await;
    let deposits = events
        .iter()
        .filter(|e| matches!(e, AccountEvent::DepositMade(DepositMade { amount: 10 })))
        .count();
    assert_eq!(deposits, 5, "every deposit is stored");
    let mut balance: i64 = 0;
    for event in &events {
        match event {
            AccountEvent::DepositMade(DepositMade { amount }) => balance += *amount as i64,
            AccountEvent::WithdrawalMade(WithdrawalMade { amount }) => balance -= *amount as i64,
            AccountEvent::AccountOpened(AccountOpened { .. }) => {}
        }
        assert!(balance >= 0, "balance went negative: {balance}");
    }
    assert_eq!(balance, expected_balance);
    assert_eq!(
        accounts.load("acc").await.expect("load").state.balance as i64,
        balance
    );
}

/// A domain whose every command takes a long decision, to let two commands
/// load the same version deterministically.
mod slow {
    use super::*;

    #[derive(Default, serde::Serialize, serde::Deserialize)]
    pub(super) struct Slow;

    pub(super) struct Touch;

    impl cqrskit::Command for Touch {
        fn command_type(&self) -> &'static str {
            "Touch"
        }
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub(super) enum SlowEvent {
        Touched,
    }

    impl DomainEvent for SlowEvent {
        const EVENT_TYPES: &'static [&'static str] = &["Touched"];
        fn event_type(&self) -> &'static str {
            "Touched"
        }
    }

    /// Every handler waits at the barrier, so all of them decide on the same version.
    pub(super) struct Gate(pub(super) tokio::sync::Barrier);

    impl Aggregate for Slow {
        const TYPE: &'static str = "slow";
        type Command = Touch;
        type Event = SlowEvent;
        type Error = std::convert::Infallible;
        type Services = Gate;

        async fn handle(&self, _: &Touch, gate: &Gate) -> Result<Vec<SlowEvent>, Self::Error> {
            gate.0.wait().await;
            Ok(vec![SlowEvent::Touched])
        }

        fn apply(&mut self, _: &SlowEvent) {}
    }
}

/// Without retries, the loser of a race gets the conflict with both versions.
pub async fn conflict_without_retry_is_reported_with_versions(store: Store) {
    let pipeline = Arc::new(CommandPipeline::<slow::Slow>::new(
        store.clone(),
        slow::Gate(tokio::sync::Barrier::new(2)),
    ));
    let first = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.execute("s", slow::Touch).await }
    });
    let second = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.execute("s", slow::Touch).await }
    });
    let results = [first.await.expect("task"), second.await.expect("task")];
    let conflicts: Vec<_> = results
        .iter()
        .filter_map(|result| match result {
            Err(CommandError::Conflict(conflict)) => Some(conflict.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        conflicts,
        [Conflict {
            stream: cqrskit::StreamId::new("slow", "s"),
            expected: ExpectedVersion::NoStream,
            actual: 1
        }]
    );
}

/// A stored payload that no longer matches its event is reported with stream,
/// version and type; nothing is written.
pub async fn undecodable_event_is_reported_with_its_place(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    store
        .append(
            &Accounts::stream_id("acc"),
            ExpectedVersion::NoStream,
            vec![
                event("AccountOpened", r#"{"owner":"A"}"#),
                event("DepositMade", r#"{"amount":"lots"}"#),
            ],
        )
        .await
        .expect("raw append");
    let result = accounts
        .execute("acc", AccountCommand::Deposit(Deposit { amount: 1 }))
        .await;
    match result {
        Err(CommandError::Store(StoreError::Decode(error))) => {
            assert_eq!(error.stream, Accounts::stream_id("acc"));
            assert_eq!(
                (error.version, error.event_type.as_str()),
                (2, "DepositMade")
            );
            let message = error.to_string();
            assert!(
                message.contains("account/acc") && message.contains("version 2"),
                "{message}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(
        store
            .stream_version(&Accounts::stream_id("acc"))
            .await
            .expect("version"),
        2
    );
}

/// An event type the aggregate does not know is reported, never skipped.
pub async fn unknown_event_type_is_reported_with_its_place(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    store
        .append(
            &Accounts::stream_id("acc"),
            ExpectedVersion::NoStream,
            vec![
                event("AccountOpened", r#"{"owner":"A"}"#),
                event("AccountFrozen", "{}"),
            ],
        )
        .await
        .expect("raw append");
    match accounts.load("acc").await {
        Err(StoreError::Decode(error)) => {
            assert_eq!(
                (error.version, error.event_type.as_str()),
                (2, "AccountFrozen")
            );
            assert!(matches!(
                *error.source,
                cqrskit::PayloadError::UnknownEventType { .. }
            ));
            assert!(
                error
                    .to_string()
                    .contains("unknown event type `AccountFrozen`"),
                "{error}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// A pipeline that caches aggregate states still judges every command against
/// the newest state: a decision from a cached state stands only when its
/// append proves the state current; a stale state's conflict, rejection or
/// decision to do nothing is decided again from a fresh load, with or without
/// a retry policy.
pub async fn state_cache_stays_correct_when_another_writer_moves_the_aggregate(store: Store) {
    let cached = Accounts::new(store.clone(), ()).with_options(
        PipelineOptions::default()
            .state_cache(100)
            .retry(RetryPolicy::retries(3)),
    );
    let other_process = Accounts::new(store.clone(), ());
    cached
        .execute("acc", OpenAccount { owner: "A".into() })
        .await
        .expect("open");
    cached
        .execute("acc", Deposit { amount: 100 })
        .await
        .expect("deposit");
    other_process
        .execute("acc", Withdraw { amount: 30 })
        .await
        .expect("withdraw elsewhere");
    // The cache still says 100; the store says 70.
    let result = cached.execute("acc", Withdraw { amount: 80 }).await;
    assert!(
        matches!(
            result,
            Err(CommandError::Rejected(AccountError::InsufficientFunds {
                balance: 70,
                requested: 80
            }))
        ),
        "{result:?}"
    );
    let outcome = cached
        .execute("acc", Withdraw { amount: 70 })
        .await
        .expect("withdraw what is there");
    assert_eq!(outcome.version, 4);
    assert_eq!(cached.load("acc").await.expect("load").state.balance, 0);

    // Without retries, a stale state never surfaces: its conflict is decided
    // again from a fresh load.
    let no_retry =
        Accounts::new(store.clone(), ()).with_options(PipelineOptions::default().state_cache(100));
    no_retry
        .execute("acc", Deposit { amount: 5 })
        .await
        .expect("deposit, caching version 5 and balance 5");
    other_process
        .execute("acc", Deposit { amount: 1 })
        .await
        .expect("deposit elsewhere");
    let outcome = no_retry
        .execute("acc", Deposit { amount: 2 })
        .await
        .expect("the stale entry is reloaded, not reported");
    assert_eq!(outcome.version, 7);

    // Nor does a stale state refuse what the newest state allows: the cache
    // says 8, the store says 58 after another deposit elsewhere.
    other_process
        .execute("acc", Deposit { amount: 50 })
        .await
        .expect("deposit elsewhere");
    let outcome = no_retry
        .execute("acc", Withdraw { amount: 40 })
        .await
        .expect("judged against the newest balance, not the cached one");
    assert_eq!(outcome.version, 9);
    assert_eq!(no_retry.load("acc").await.expect("load").state.balance, 18);
}
