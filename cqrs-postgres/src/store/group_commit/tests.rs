use super::*;

fn batch(id: &str) -> (StreamId, Arc<Batch>) {
    let stream = StreamId::new("thing", id);
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Ticked".into(),
        event_version: 1,
        payload: serde_json::value::RawValue::from_string("{}".into()).expect("JSON"),
        metadata: cqrskit_core::Metadata::new(),
    };
    let batch = Batch::new(&stream, &[event]).expect("a batch");
    (stream, Arc::new(batch))
}

fn nowhere() -> PostgresEventStore {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(100))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("a lazy pool");
    PostgresEventStore::from_pool(pool)
}

#[tokio::test]
async fn group_commit_is_on_by_default_and_can_be_turned_off() {
    let store = nowhere();
    assert!(store.grouping.is_some(), "on by default");
    assert_eq!(
        store.options().get_group_commit(),
        Some(GroupCommit::default())
    );
    let off = store.with_options(StoreOptions::default().group_commit(None));
    assert!(off.grouping.is_none());
    let on = off.with_options(StoreOptions::default());
    assert!(on.grouping.is_some(), "turned on again");
}

/// While no group forms, appends are their callers' to write, up to
/// `max_alone` at once, with no hop through the group writer. One that
/// finds no lone place goes to the group writer (here against a
/// database that does not answer: not written, so its caller writes it
/// alone); appends soon after it join groups too, even with a lone
/// place free, until no append was queued for a while.
#[tokio::test]
async fn appends_are_written_alone_until_a_group_forms() {
    let store = nowhere();
    // A linger far longer than a scheduling pause on a busy machine.
    let linger = std::time::Duration::from_millis(300);
    let grouping = Grouping {
        linger,
        ..Grouping::new(GroupCommit::default().max_in_flight(1).max_alone(2))
    };
    let mut places = Vec::new();
    for id in ["a", "b"] {
        let (stream, batch) = batch(id);
        match grouping.append(&store.appender(), &stream, 0, batch).await {
            Grouped::Alone(place) => places.push(place),
            _ => panic!("an append with a lone place free must be its caller's"),
        }
    }
    assert!(
        grouping.requests.get().is_none(),
        "no group writer was needed"
    );
    let grouped = |id: &'static str| {
        let (stream, batch) = batch(id);
        let (grouping, store) = (&grouping, &store);
        async move {
            match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                grouping.append(&store.appender(), &stream, 0, batch),
            )
            .await
            {
                Ok(Grouped::NotWritten) => {}
                Ok(Grouped::Alone(_)) => panic!("{id}: written alone while grouping"),
                Ok(_) => panic!("{id}: a group that could not reach the database wrote"),
                Err(_) => panic!("{id}: the group writer never answered"),
            }
        }
    };
    grouped("c").await;
    // A lone place is free again, but a group formed a moment ago.
    places.pop();
    grouped("d").await;
    tokio::time::sleep(linger * 2).await;
    let (stream, batch) = batch("e");
    assert!(
        matches!(
            grouping.append(&store.appender(), &stream, 0, batch).await,
            Grouped::Alone(_)
        ),
        "once no group forms, appends are written alone again"
    );
}

#[tokio::test]
async fn with_no_lone_places_every_append_is_grouped() {
    let store = nowhere();
    let grouping = Grouping::new(GroupCommit::default().max_alone(0));
    let (stream, batch) = batch("a");
    assert!(matches!(
        grouping.append(&store.appender(), &stream, 0, batch).await,
        Grouped::NotWritten
    ));
    assert!(grouping.requests.get().is_some());
}
