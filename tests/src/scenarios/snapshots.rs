//! Snapshots: only the newest kept, saved with the append they describe,
//! and loads that use them or fall back to a full replay.

use super::*;

/// Loading returns the newest snapshot; saving an older one changes nothing.
pub async fn snapshots_keep_only_the_newest(store: Store) {
    assert!(
        snapshots(&store)
            .load_snapshot(&stream("a"))
            .await
            .expect("load")
            .is_none()
    );
    let snapshot = |version: u64| Snapshot {
        stream: stream("a"),
        version,
        schema_version: 1,
        state: json(&format!(r#"{{"at":{version}}}"#)),
        taken_at: chrono::Utc::now(),
    };
    snapshots(&store)
        .save_snapshot(snapshot(10))
        .await
        .expect("save");
    snapshots(&store)
        .save_snapshot(snapshot(20))
        .await
        .expect("save");
    snapshots(&store)
        .save_snapshot(snapshot(15))
        .await
        .expect("save older");
    let loaded = snapshots(&store)
        .load_snapshot(&stream("a"))
        .await
        .expect("load")
        .expect("some");
    assert_eq!(loaded.version, 20);
    assert_eq!(value(loaded.state.get()), value(r#"{"at":20}"#));
    assert!(
        snapshots(&store)
            .load_snapshot(&stream("b"))
            .await
            .expect("load")
            .is_none()
    );
}

/// A snapshot given with an append is saved only when the append stores
/// the batch and the snapshot is of that stream at the version the batch
/// ends on; whatever the expectation, and never when the append fails.
pub async fn a_snapshot_rides_only_with_the_append_it_describes(store: Store) {
    let snapshot = |id: &str, version: u64| Snapshot {
        stream: stream(id),
        version,
        schema_version: 1,
        state: json(&format!(r#"{{"at":{version}}}"#)),
        taken_at: chrono::Utc::now(),
    };
    let saved = |id: &'static str| {
        let store = store.clone();
        async move {
            snapshots(&store)
                .load_snapshot(&stream(id))
                .await
                .expect("load")
                .map(|snapshot| snapshot.version)
        }
    };
    let a = stream("a");
    store
        .append_with_snapshot(&a, ExpectedVersion::NoStream, ticks(2), snapshot("a", 2))
        .await
        .expect("append");
    assert_eq!(
        saved("a").await,
        Some(2),
        "saved with the batch ending at 2"
    );
    store
        .append_with_snapshot(&a, ExpectedVersion::Exact(2), ticks(1), snapshot("a", 7))
        .await
        .expect("append");
    assert_eq!(
        saved("a").await,
        Some(2),
        "a snapshot at 7 after a batch ending at 3"
    );
    match store
        .append_with_snapshot(&a, ExpectedVersion::Exact(1), ticks(1), snapshot("a", 2))
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    store
        .append_with_snapshot(&a, ExpectedVersion::Any, ticks(1), snapshot("a", 4))
        .await
        .expect("append");
    assert_eq!(saved("a").await, Some(4), "saved after an `Any` append");
    store
        .append_with_snapshot(&a, ExpectedVersion::Exact(4), ticks(1), snapshot("b", 5))
        .await
        .expect("append");
    assert_eq!(saved("a").await, Some(4));
    assert_eq!(saved("b").await, None, "a snapshot of another stream");
    assert_eq!(store.stream_version(&a).await.expect("version"), 5);
}

/// With snapshots every 3 events, loading (snapshot + later events) gives the
/// state a full replay gives, and the snapshot is really used.
pub async fn snapshot_plus_events_rebuilds_the_same_state_as_full_replay(store: Store) {
    let accounts = Accounts::new(store.clone(), ())
        .with_options(PipelineOptions::default().snapshots(SnapshotPolicy::Every(3)));
    accounts
        .execute(
            "acc",
            AccountCommand::Open(OpenAccount { owner: "A".into() }),
        )
        .await
        .expect("open");
    for amount in 1..=10 {
        accounts
            .execute("acc", AccountCommand::Deposit(Deposit { amount }))
            .await
            .expect("deposit");
    }
    accounts
        .execute("acc", AccountCommand::Withdraw(Withdraw { amount: 7 }))
        .await
        .expect("withdraw");

    let snapshot = snapshots(&store)
        .load_snapshot(&Accounts::stream_id("acc"))
        .await
        .expect("load")
        .expect("a snapshot was taken");
    assert_eq!(snapshot.version, 12);
    let replayed = fold(&stored_account_events(&store, "acc").await);
    let loaded = accounts.load("acc").await.expect("load");
    assert_eq!(loaded.state, replayed);
    assert_eq!(loaded.version, 12);

    // Prove the load starts from the snapshot: a doctored snapshot shows through.
    let mut doctored = snapshot.clone();
    doctored.version = 12;
    doctored.state = json(r#"{"owner":"A","balance":1000000}"#);
    snapshots(&store)
        .save_snapshot(doctored)
        .await
        .expect("save");
    assert_eq!(
        accounts.load("acc").await.expect("load").state.balance,
        1_000_000
    );
}

/// A snapshot the aggregate cannot use (its state no longer deserializes, or
/// it was taken with another snapshot schema version) is passed over: the
/// load replays the whole stream and gets the true state.
pub async fn an_unusable_snapshot_falls_back_to_a_full_replay(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[5, 7]).await;
    let doctored = |state: &str, schema_version: u32| Snapshot {
        stream: Accounts::stream_id("acc"),
        version: 2,
        schema_version,
        state: json(state),
        taken_at: chrono::Utc::now(),
    };
    for (state, schema_version, why) in [
        (
            r#""not a state""#,
            BankAccount::SNAPSHOT_VERSION,
            "does not deserialize",
        ),
        (
            r#"{"owner":"A","balance":1000000}"#,
            BankAccount::SNAPSHOT_VERSION + 1,
            "has another schema version",
        ),
    ] {
        // Saving moves the snapshot forward only; start each case afresh.
        let fresh = Snapshot {
            version: 3,
            ..doctored(state, schema_version)
        };
        snapshots(&store).save_snapshot(fresh).await.expect("save");
        let loaded = accounts.load("acc").await.expect("load");
        assert_eq!(
            (loaded.version, loaded.state.balance),
            (3, 12),
            "a snapshot that {why}"
        );
        let past = accounts.load_at("acc", 2).await.expect("load_at");
        assert_eq!(past.state.balance, 5, "load_at with a snapshot that {why}");
    }
}

/// `load_from_events` replays every event and takes no snapshot, even a
/// usable one that disagrees with the events (one written by a buggy
/// version): the way to check a snapshot, or to load past one.
pub async fn loading_from_events_ignores_the_snapshot(store: Store) {
    let accounts = Accounts::new(store.clone(), ());
    open_with_deposits(&accounts, "acc", &[5, 7]).await;
    snapshots(&store)
        .save_snapshot(Snapshot {
            stream: Accounts::stream_id("acc"),
            version: 3,
            schema_version: BankAccount::SNAPSHOT_VERSION,
            state: json(r#"{"owner":"A","balance":1000000}"#),
            taken_at: chrono::Utc::now(),
        })
        .await
        .expect("save");
    let from_snapshot = accounts.load("acc").await.expect("load");
    assert_eq!(
        from_snapshot.state.balance, 1_000_000,
        "load takes the snapshot"
    );
    let from_events = accounts.load_from_events("acc").await.expect("load");
    assert_eq!((from_events.version, from_events.state.balance), (3, 12));
}
