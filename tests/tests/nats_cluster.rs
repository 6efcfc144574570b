//! The relay against a three-node JetStream cluster with an R3 stream,
//! under faults: the stream's leader killed with SIGKILL, a follower
//! killed, and quorum lost (two nodes down) then regained, while accounts
//! keep withdrawing. The relay resumes on its own each time; the
//! stream ends with every selected event once, in log order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount, Withdraw};
use cqrs_tests::nats::{NatsCluster, PublicAccountEvents, stream_of, unique};
use cqrs_tests::postgres::TestStore;
use cqrs_tests::relay::{differences, selected_ids, stored_count, stream_contents, until_relayed};
use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{ContentMode, Relay, RelayOptions};
use cqrskit::postgres::{FailurePolicy, ProjectionRunner, RunnerOptions};
use cqrskit::{Backoff, CommandPipeline};

const ACCOUNTS: usize = 4;

/// Waits until the stream holds `count` messages; how long it took.
async fn until_stored(
    watcher: &jetstream::Context,
    prefix: &str,
    count: usize,
    what: &str,
) -> Duration {
    let started = Instant::now();
    while stored_count(watcher, prefix).await < count as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: the stream did not reach {count} messages within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_into_an_r3_stream_survives_its_leader_a_follower_and_quorum_failing() {
    let db = TestStore::new().await;
    let mut cluster = NatsCluster::start().await;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(cluster.client().await);
    let prefix = unique("bank");
    let options = RelayOptions::new(&prefix, "/bank").mode(ContentMode::Binary);
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        PublicAccountEvents,
        options,
    );
    let runner = Arc::new(
        ProjectionRunner::new(db.store.clone(), Arc::new(relay)).with_options(
            RunnerOptions::default()
                .poll_interval(Duration::from_millis(50))
                .failure(
                    FailurePolicy::default()
                        .max_attempts(10_000)
                        .backoff(Backoff::default().max(Duration::from_millis(500))),
                ),
        ),
    );
    // Accounts withdraw at a steady pace until the faults are over.
    let withdrawn = Arc::new(AtomicUsize::new(0));
    let banking = Arc::new(AtomicBool::new(true));
    let accounts = Arc::new(CommandPipeline::<BankAccount>::new(db.shared(), ()));
    let workers: Vec<_> = (0..ACCOUNTS)
        .map(|account| {
            let (accounts, withdrawn, banking) =
                (accounts.clone(), withdrawn.clone(), banking.clone());
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
                while banking.load(Ordering::Relaxed) {
                    accounts
                        .execute(&id, Withdraw { amount: 1 })
                        .await
                        .expect("withdraw");
                    withdrawn.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    let running = cqrs_tests::running::Running::start(&runner);
    // A short timeout: a question to a dead node is asked again at once.
    let watcher = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(cluster.watcher_client().await);
    let step = 150;

    // 1. The stream's leader dies: another node takes over.
    until_stored(&watcher, &prefix, step, "start").await;
    let created = watcher
        .get_stream(stream_of(&prefix))
        .await
        .expect("the relay's stream");
    assert_eq!(
        created.cached_info().config.num_replicas,
        3,
        "the relay makes its stream R3 in a cluster"
    );
    let leader = cluster.leader_of(&watcher, &stream_of(&prefix)).await;
    cluster.nodes[leader].kill();
    let after_leader = until_stored(&watcher, &prefix, 2 * step, "leader killed").await;
    let new_leader = cluster.leader_of(&watcher, &stream_of(&prefix)).await;
    assert_ne!(new_leader, leader, "another node leads");
    cluster.nodes[leader].resume().await;

    // 2. A follower dies: the two others are a quorum.
    let follower = (0..3).find(|node| *node != new_leader).expect("a follower");
    cluster.nodes[follower].kill();
    until_stored(&watcher, &prefix, 3 * step, "follower killed").await;
    cluster.nodes[follower].resume().await;

    // 3. Quorum lost: two nodes down. Nothing is acknowledged, the relay's
    // lag grows; it resumes alone once a node is back.
    let leader = cluster.leader_of(&watcher, &stream_of(&prefix)).await;
    let down: Vec<usize> = (0..3).filter(|node| *node != leader).collect();
    for node in &down {
        cluster.nodes[*node].kill();
    }
    let stored_before = stored_count(&watcher, &prefix).await;
    let lag_before = runner.lag().await.expect("lag").events;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag_without_quorum = runner.lag().await.expect("lag").events;
    assert!(
        lag_without_quorum > lag_before + 10,
        "without quorum the lag grows: {lag_before} then {lag_without_quorum}"
    );
    for node in &down {
        cluster.nodes[*node].resume().await;
    }
    let regained = Instant::now();
    until_stored(
        &watcher,
        &prefix,
        usize::try_from(stored_before).expect("small") + step,
        "quorum regained",
    )
    .await;
    let resumed = regained.elapsed();
    banking.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("the banking ran");
    }

    let selected = selected_ids(&db.store).await;
    assert_eq!(
        selected.len(),
        ACCOUNTS + withdrawn.load(Ordering::Relaxed),
        "the log holds every opening and withdrawal"
    );
    assert!(
        selected.len() > 5 * step,
        "hundreds of events: {}",
        selected.len()
    );
    until_relayed(&runner, Duration::from_secs(120), "of quorum's return").await;
    let caught_up = regained.elapsed();
    running
        .stop()
        .await
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
    println!(
        "cluster: {} events; {step} more messages {after_leader:?} after the leader's kill; \
         publishing again {resumed:?} and caught up {caught_up:?} after quorum's return \
         (lag {lag_before} -> {lag_without_quorum} without quorum)",
        selected.len()
    );
    db.drop_schema().await;
}
