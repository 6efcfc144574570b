//! The relay from the global log to JetStream under faults, against real
//! processes: the relay killed between JetStream's acknowledgement and its
//! checkpoint, its nats-server killed under load, a message JetStream
//! refuses, its stream deleted under it. Whatever happens, the stream holds
//! each selected event at most once, in log order, and every one once the
//! fault is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::nats::{PrivateNats, PublicAccountEvents, connect, jetstream, stream_of, unique};
use cqrs_tests::postgres::TestStore;
use cqrs_tests::relay::{
    Withdrawals, differences, message_count, published, published_cents, relay, selected_ids,
    some_banking, stored_count, stream_contents, thirty_withdrawals, until_relayed,
    withdrawal_relay,
};
use cqrskit::nats::async_nats::jetstream::{self, Context};
use cqrskit::nats::{ContentMode, Relay, RelayOptions};
use cqrskit::postgres::testing::caught_up;
use cqrskit::postgres::{Error, FailurePolicy, OnExhausted, ProjectionRunner, RunnerOptions};
use cqrskit::{Backoff, CommandPipeline, Position};

/// How long a relay's lease lasts in the process tests: a killed relay's
/// lapses quickly.
const LEASE_MS: u64 = 1500;

/// A relay process, killed with SIGKILL when dropped so that a failing test
/// leaves none behind.
struct RelayProcess(std::process::Child);

impl RelayProcess {
    fn start(db: &TestStore, prefix: &str, hold_after_publish: bool) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nats_relay"));
        command
            .env("DATABASE_URL", cqrs_tests::postgres::database_url())
            .env("SCHEMA", &db.schema)
            .env("NATS_URL", cqrs_tests::nats::nats_url())
            .env("PREFIX", prefix)
            .env("LEASE_MS", LEASE_MS.to_string())
            .stdout(std::process::Stdio::piped());
        if hold_after_publish {
            command.env("HOLD_AFTER_PUBLISH", "1");
        }
        Self(command.spawn().expect("start a relay process"))
    }

    /// Waits until the process prints `line`.
    fn wait_for(&mut self, line: &str) {
        use std::io::BufRead;
        let stdout = self.0.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for printed in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = sender.send(printed);
            }
        });
        loop {
            let printed = receiver
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the relay process never printed `{line}`"));
            if printed == line {
                return;
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A relay in the parent process, under the same name as the one killed:
/// it gets the lease once the killed one's lapses.
async fn successor(
    db: &TestStore,
    jetstream: &Context,
    prefix: &str,
) -> ProjectionRunner<Relay<PublicAccountEvents>> {
    let runner = ProjectionRunner::new(
        db.store.clone(),
        Arc::new(relay(jetstream, prefix, ContentMode::Structured)),
    )
    .with_options(RunnerOptions::default().lease_duration(Duration::from_millis(LEASE_MS)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !runner.acquire_lease().await.expect("lease") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed relay's lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runner
}

/// The relay is killed (SIGKILL) after JetStream acknowledged its batch and
/// before its checkpoint committed, and its successor comes after the
/// stream's duplicate window has passed (JetStream no longer recognises the
/// message ids): the successor reads where the stream stands and sends none
/// of the batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_the_acks_and_its_checkpoint_delivers_nothing_twice() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    some_banking(&db.store).await;
    cqrs_tests::scenarios::settled(&db.shared(), 6).await;
    let prefix = unique("bank");
    prepared_stream(&jetstream, &prefix, |config| {
        config.duplicate_window = Duration::from_millis(500);
    })
    .await;

    let mut process = RelayProcess::start(&db, &prefix, true);
    process.wait_for("published");
    assert_eq!(
        message_count(&jetstream, &prefix).await,
        4,
        "the batch reached JetStream"
    );
    process.kill();
    // Past the duplicate window, and past JetStream's sweep of it.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let runner = successor(&db, &jetstream, &prefix).await;
    assert_eq!(
        runner.checkpoint().await.expect("checkpoint"),
        Position::START
    );
    assert_eq!(
        caught_up(&runner).await,
        4,
        "the successor went through the batch again"
    );
    assert_eq!(
        message_count(&jetstream, &prefix).await,
        4,
        "without storing any of it twice"
    );

    // Later events go out once, after the others.
    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    accounts
        .execute("a", Withdraw { amount: 5 })
        .await
        .expect("withdraw");
    caught_up(&runner).await;
    let messages = published(&jetstream, &prefix).await;
    assert_eq!(messages.len(), 5);
    let ids: std::collections::HashSet<_> =
        messages.iter().map(|(_, event, _)| &event.id).collect();
    assert_eq!(ids.len(), 5, "each event once");
    runner.release_lease().await.expect("release");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// The relay's nats-server is killed (SIGKILL) four times and started again
/// while six accounts take 500 withdrawals each, hundreds of messages in
/// flight at each kill: publishes fail mid-batch, buffered messages go out
/// after the reconnect, the runner retries. In the end JetStream holds the
/// 3,006 selected events once each and exactly in log order (so every
/// account's in version order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_four_times_under_load_loses_doubles_and_reorders_nothing() {
    const ACCOUNTS: usize = 6;
    const WITHDRAWALS: usize = 500;
    const KILLS: usize = 4;
    let db = TestStore::new().await;
    let mut server = PrivateNats::start().await;
    // A short acknowledgement timeout: a message lost in the crash is found
    // out within it.
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(connect(&server.url()).await);
    let prefix = unique("bank");
    let runner = Arc::new(
        ProjectionRunner::new(
            db.store.clone(),
            Arc::new(relay(&jetstream, &prefix, ContentMode::Binary)),
        )
        .with_options(
            RunnerOptions::default()
                .poll_interval(Duration::from_millis(50))
                .failure(
                    FailurePolicy::default()
                        .max_attempts(1000)
                        .backoff(Backoff::default().max(Duration::from_millis(500))),
                ),
        ),
    );
    let withdrawn = Arc::new(AtomicUsize::new(0));
    let accounts = Arc::new(CommandPipeline::<BankAccount>::new(db.shared(), ()));
    let workers: Vec<_> = (0..ACCOUNTS)
        .map(|account| {
            let (accounts, withdrawn) = (accounts.clone(), withdrawn.clone());
            tokio::spawn(async move {
                let id = format!("acc-{account}");
                let owner = id.clone();
                accounts
                    .execute(&id, OpenAccount { owner })
                    .await
                    .expect("open");
                accounts
                    .execute(&id, Deposit { amount: 1_000_000 })
                    .await
                    .expect("deposit");
                for _ in 0..WITHDRAWALS {
                    accounts
                        .execute(&id, Withdraw { amount: 1 })
                        .await
                        .expect("withdraw");
                    withdrawn.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The relay starts behind, so that it publishes whole batches of 500
    // with the banking still going on.
    while withdrawn.load(Ordering::Relaxed) < ACCOUNTS * WITHDRAWALS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    // A kill each time the stream has grown by a fifth of the events, the
    // relay in the middle of publishing.
    let watcher = jetstream::new(connect(&server.url()).await);
    let selected_count = ACCOUNTS * (WITHDRAWALS + 1);
    for kill in 1..=KILLS {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while stored_count(&watcher, &prefix).await < (kill * selected_count / (KILLS + 1)) as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "kill {kill}: the relay published nothing for 60 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.resume().await;
    }
    for worker in workers {
        worker.await.expect("the banking ran");
    }

    let selected = selected_ids(&db.store).await;
    assert_eq!(selected.len(), ACCOUNTS * (WITHDRAWALS + 1));
    until_relayed(&runner, Duration::from_secs(120), "of the last kill").await;
    let _ = stop.send(());
    running
        .await
        .expect("join")
        .expect("the relay ran without giving up");

    let stored = stream_contents(&jetstream, &prefix).await;
    let (missing, doubled, reordered) = differences(&stored, &selected);
    assert_eq!(
        (missing, doubled, reordered),
        (0, 0, 0),
        "{} messages for {} events: (missing, doubled, out of log order)",
        stored.len(),
        selected.len()
    );
    let ids: Vec<&String> = stored.iter().map(|(id, _)| id).collect();
    assert!(
        ids.iter().copied().eq(selected.iter()),
        "the stream is the log's selection, in order"
    );
    db.drop_schema().await;
}

/// A stream of the relay's name and subjects, made by the test with
/// `configure` applied, before the relay's setup would.
async fn prepared_stream(
    jetstream: &Context,
    prefix: &str,
    configure: impl FnOnce(&mut jetstream::stream::Config),
) {
    let mut config = jetstream::stream::Config {
        name: stream_of(prefix),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    };
    configure(&mut config);
    jetstream.create_stream(config).await.expect("a stream");
}

/// JetStream refuses the fifth withdrawal's message (over the stream's
/// largest message) while the rest of its batch and the batch read ahead
/// are on the wire: nothing after it is stored, the relay stops at it with
/// JetStream's reason, and once the limit is raised the relay goes on from
/// there, every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_jetstream_refuses_stops_the_relay_before_anything_after_it() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    let prefix = unique("bank");
    prepared_stream(&jetstream, &prefix, |config| config.max_message_size = 2048).await;
    let withdrawals = || Withdrawals {
        oversized: Some(5),
        ..Withdrawals::default()
    };

    let runner = withdrawal_relay(&db, &jetstream, &prefix, withdrawals());
    assert!(runner.acquire_lease().await.expect("lease"));
    let stopped = runner.catch_up().await.expect_err("stopped");
    let Error::Stopped { reason, .. } = &stopped else {
        panic!("stopped at the refused message, not: {stopped}");
    };
    assert!(reason.contains("did not store"), "{reason}");
    // Longer than a look-ahead waits for its batch to go out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(published_cents(&jetstream, &prefix).await, [1, 2, 3, 4]);

    let mut stream = jetstream
        .get_stream(stream_of(&prefix))
        .await
        .expect("stream");
    let mut config = stream.info().await.expect("info").config.clone();
    config.max_message_size = -1;
    jetstream
        .update_stream(config)
        .await
        .expect("raise the limit");
    runner.resume().await.expect("resume");
    caught_up(&runner).await;
    assert_eq!(
        published_cents(&jetstream, &prefix).await,
        (1..=30).collect::<Vec<_>>()
    );
    runner.release_lease().await.expect("release");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");
    db.drop_schema().await;
}

/// The relay's stream is deleted under it: the relay creates it again (as
/// its setup would) and publishes what comes after, in order; a relay whose
/// stream is managed elsewhere stops instead, naming the subjects no stream
/// captures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_the_relay_is_created_again_or_named() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    let prefix = unique("bank");
    let runner = withdrawal_relay(&db, &jetstream, &prefix, Withdrawals::default());
    assert!(runner.acquire_lease().await.expect("lease"));
    assert_eq!(caught_up(&runner).await, 30);
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");

    let accounts = CommandPipeline::<BankAccount>::new(db.shared(), ());
    for cents in 31..=40 {
        accounts
            .execute("a", Withdraw { amount: cents })
            .await
            .expect("withdraw");
    }
    assert_eq!(caught_up(&runner).await, 10);
    assert_eq!(
        published_cents(&jetstream, &prefix).await,
        (31..=40).collect::<Vec<_>>()
    );
    runner.release_lease().await.expect("release");
    jetstream
        .delete_stream(stream_of(&prefix))
        .await
        .expect("delete the stream");

    // Managed elsewhere, and missing.
    let options = RelayOptions::new(&prefix, "/bank").stream(None);
    let relay = Relay::new(
        format!("relay_elsewhere_{prefix}"),
        jetstream.clone(),
        Withdrawals::default(),
        options,
    );
    let runner = ProjectionRunner::new(db.store.clone(), Arc::new(relay)).with_options(
        RunnerOptions::default().failure(
            FailurePolicy::default()
                .max_attempts(2)
                .backoff(Backoff::default().initial(Duration::from_millis(10))),
        ),
    );
    assert!(runner.acquire_lease().await.expect("lease"));
    let stopped = runner.catch_up().await.expect_err("stopped");
    assert!(
        stopped
            .to_string()
            .contains(&format!("no JetStream stream captures `{prefix}.>`")),
        "{stopped}"
    );
    runner.release_lease().await.expect("release");
    db.drop_schema().await;
}

/// A relay that stops at an event it cannot publish has published nothing
/// after it, whether the event is in the batch being applied (nothing goes
/// ahead of a batch that did not go out whole) or in the batch read ahead
/// (sending ahead stops at it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_at_an_event_has_published_nothing_after_it() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    for refuse in [5, 15] {
        let prefix = unique("bank");
        let runner = withdrawal_relay(
            &db,
            &jetstream,
            &prefix,
            Withdrawals {
                refuse: Some(refuse),
                ..Withdrawals::default()
            },
        );
        assert!(runner.acquire_lease().await.expect("lease"));
        let stopped = runner.catch_up().await.expect_err("stopped");
        assert!(
            matches!(stopped, cqrskit::postgres::Error::Stopped { .. }),
            "{stopped}"
        );
        // Longer than a look-ahead waits for its batch to go out.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            published_cents(&jetstream, &prefix).await,
            (1..refuse).collect::<Vec<_>>(),
            "refusing {refuse} cents"
        );
        runner.release_lease().await.expect("release");
        jetstream
            .delete_stream(stream_of(&prefix))
            .await
            .expect("delete the stream");
    }
    db.drop_schema().await;
}

/// A relay refuses to run in a configuration that would publish out of log
/// order or lose an event: parking the events it cannot publish (a replay
/// would publish them after later ones, or the stream's position would
/// skip them), or splitting it into partitions (each would take the
/// others' messages for its own). It publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_to_park_events_or_run_in_partitions() {
    let db = TestStore::new().await;
    let jetstream = jetstream().await;
    thirty_withdrawals(&db).await;
    let prefix = unique("bank");
    let relay = || {
        Arc::new(Relay::new(
            format!("relay_{prefix}"),
            jetstream.clone(),
            Withdrawals::default(),
            RelayOptions::new(&prefix, "/bank"),
        ))
    };
    for on_exhausted in [OnExhausted::Park, OnExhausted::ParkStream] {
        let runner = ProjectionRunner::new(db.store.clone(), relay()).with_options(
            RunnerOptions::default().failure(FailurePolicy::default().on_exhausted(on_exhausted)),
        );
        let refused = runner.acquire_lease().await.expect_err("refused");
        assert!(
            matches!(&refused, Error::Misconfigured { reason, .. } if reason.contains("OnExhausted::Stop")),
            "{on_exhausted:?}: {refused}"
        );
    }
    let split = cqrskit::postgres::PartitionedRunner::new(db.store.clone(), relay(), 2)
        .expect("partitions");
    let refused = split.partitions()[0]
        .acquire_lease()
        .await
        .expect_err("refused");
    assert!(
        matches!(&refused, Error::Misconfigured { reason, .. } if reason.contains("unpartitioned")),
        "{refused}"
    );
    assert!(
        jetstream.get_stream(stream_of(&prefix)).await.is_err(),
        "nothing was set up or published"
    );
    db.drop_schema().await;
}
