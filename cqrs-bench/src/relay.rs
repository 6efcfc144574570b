//! relay: events from the global log to JetStream-acknowledged messages,
//! against the same messages published directly with async-nats in the same
//! run.

use std::sync::Arc;
use std::time::Instant;

use cqrskit::nats::async_nats::jetstream::message::PublishMessage;
use cqrskit::nats::async_nats::{self, jetstream};
use cqrskit::nats::{CloudEvent, ContentMode, Outgoing, Publication, Relay, RelayOptions};
use cqrskit::postgres::sqlx::PgPool;
use cqrskit::postgres::{ProjectionRunner, RunnerOptions};
use cqrskit::{BoxError, CommandPipeline, EventEnvelope, EventStore};

use crate::report::{Report, per_second};
use crate::scenarios::{Sandbox, check};
use crate::tally::{AddMany, Tally, TallyEvent};
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// Every tally event leaves, as `bench.added.v1`.
pub(crate) struct EveryAddition;

impl Publication for EveryAddition {
    type Event = TallyEvent;

    fn publish(
        &self,
        event: &EventEnvelope<TallyEvent>,
    ) -> std::result::Result<Option<Outgoing>, BoxError> {
        let TallyEvent::Added(added) = &event.payload;
        Ok(Some(Outgoing::new(
            "bench.added.v1",
            &serde_json::json!({ "n": added.n }),
        )?))
    }
}

/// The latency baseline's message number `n`: a CloudEvent like the relay's
/// for an addition, ready to publish with its id as message id; and the id.
fn direct_message(subject: &str, n: usize) -> Result<(String, PublishMessage)> {
    let event = CloudEvent {
        id: uuid::Uuid::now_v7().to_string(),
        source: "/bench".into(),
        event_type: "bench.added.v1".into(),
        time: Some(cqrskit::postgres::sqlx::types::chrono::Utc::now()),
        subject: Some(subject.to_owned()),
        data_content_type: "application/json".into(),
        data: serde_json::value::to_raw_value(&serde_json::json!({ "n": n }))?,
        extensions: Default::default(),
    };
    let (headers, body) = event.encode(ContentMode::Structured).map_err(nats)?;
    let message = PublishMessage::build()
        .headers(headers)
        .message_id(&event.id)
        .payload(body);
    Ok((event.id, message))
}

pub(crate) fn nats(error: impl std::fmt::Display) -> BenchError {
    BenchError::Task(format!(
        "NATS: {error} (scripts/ensure-nats starts a server)"
    ))
}

/// Rounds of the relay-throughput scenario: the relay and the direct
/// publish take turns, so a slow spell of the machine falls on both.
const ROUNDS: usize = 3;

/// Appends `config.relay_events` events, then, in [`ROUNDS`] alternating
/// turns, relays them all with a fresh relay and publishes the very
/// messages the relay sends (built from the stored events by the same relay
/// code before the clock starts) directly: JetStream publishes with message
/// ids, 1000 sent before their acknowledgements are awaited (the relay's
/// batch size here). Reports the median rate of each.
pub(crate) async fn relay(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let jetstream = jetstream::new(async_nats::connect(&url).await.map_err(nats)?);
    let sandbox = Sandbox::new(pool).await?;
    let per_stream = 1000.min(config.relay_events.max(1));
    let total = sandbox
        .tally_log(config.relay_events.div_ceil(per_stream), per_stream)
        .await?;
    let direct_prefix = format!("direct{}", uuid::Uuid::now_v7().simple());
    let messages = relayed_messages(&sandbox, &jetstream, &direct_prefix, total).await?;

    let (relayed, direct) = relay_against_direct(&sandbox, &jetstream, total, &messages, 1).await?;
    sandbox.drop().await?;
    Ok(vec![Report::new(
        "relay-throughput",
        relayed,
        direct,
        "events/s",
    )])
}

/// The median rates of [`ROUNDS`] alternating turns: a fresh relay over the
/// sandbox's `total` events, and `messages` (the relay's own) published
/// directly into a stream of `replicas` replicas.
pub(crate) async fn relay_against_direct(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    total: usize,
    messages: &[(String, PublishMessage)],
    replicas: usize,
) -> Result<(f64, f64)> {
    let (mut relayed, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        relayed.push(relay_round(sandbox, jetstream, total).await?);
        direct.push(direct_round(jetstream, messages, replicas).await?);
    }
    Ok((median(relayed), median(direct)))
}

/// The median rate of [`ROUNDS`] fresh relays over the sandbox's `total`
/// events.
pub(crate) async fn relay_rate(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    total: usize,
) -> Result<f64> {
    let mut relayed = Vec::new();
    for _ in 0..ROUNDS {
        relayed.push(relay_round(sandbox, jetstream, total).await?);
    }
    Ok(median(relayed))
}

pub(crate) fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Checks that the stream `name` holds `total` messages, then deletes it.
async fn verified(jetstream: &jetstream::Context, name: &str, total: usize) -> Result<()> {
    let mut stream = jetstream.get_stream(name).await.map_err(nats)?;
    let stored = stream.info().await.map_err(nats)?.state.messages;
    check(
        stored == total as u64,
        format!("relay: stream {name} holds {stored} of {total} messages"),
    )?;
    jetstream.delete_stream(name).await.map_err(nats)?;
    Ok(())
}

/// One relay, fresh (its own checkpoint and stream), over the whole log:
/// its rate from the first read to the last acknowledgement.
async fn relay_round(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    total: usize,
) -> Result<f64> {
    let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
    let options = RelayOptions::new(&prefix, "/bench");
    let stream = options
        .get_stream()
        .map(|stream| stream.get_name().to_owned())
        .unwrap_or_default();
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        EveryAddition,
        options,
    );
    let runner = ProjectionRunner::new(sandbox.store.clone(), Arc::new(relay))
        .with_options(RunnerOptions::default().batch_size(1000));
    if !runner.acquire_lease().await? {
        return Err(BenchError::Verification(
            "a fresh relay's lease is taken".into(),
        ));
    }
    runner.setup().await?;
    let started = Instant::now();
    let mut relayed = 0;
    while relayed < total {
        relayed += runner.catch_up().await?;
    }
    let rate = per_second(total, started.elapsed());
    runner.release_lease().await?;
    verified(jetstream, &stream, total).await?;
    Ok(rate)
}

/// The relay's own messages for every stored event: subject, CloudEvent
/// with its extensions and message id, shaped by the same relay code.
/// Their subjects start with `prefix`.
pub(crate) async fn relayed_messages(
    sandbox: &Sandbox,
    jetstream: &jetstream::Context,
    prefix: &str,
    total: usize,
) -> Result<Vec<(String, PublishMessage)>> {
    let shaper = Relay::new(
        "shaper",
        jetstream.clone(),
        EveryAddition,
        RelayOptions::new(prefix, "/bench"),
    );
    let mut messages = Vec::with_capacity(total);
    let mut after = cqrskit::Position::default();
    while messages.len() < total {
        let stored = sandbox
            .store
            .read_log(after, &cqrskit::LogFilter::all(), 1000)
            .await?;
        let Some(last) = stored.last() else { break };
        after = last.position;
        for event in stored {
            let event = event
                .decode::<TallyEvent>()
                .map_err(|error| BenchError::Task(error.to_string()))?;
            let outgoing = EveryAddition
                .publish(&event)
                .map_err(|error| BenchError::Task(error.to_string()))?
                .ok_or_else(|| BenchError::Task("every addition leaves".into()))?;
            let subject = shaper.subject(&event, &outgoing);
            let (headers, body) = shaper
                .cloud_event(&event, outgoing)
                .encode(ContentMode::Structured)
                .map_err(nats)?;
            let message = PublishMessage::build()
                .headers(headers)
                .message_id(event.event_id.to_string())
                .payload(body);
            messages.push((subject, message));
        }
    }
    Ok(messages)
}

/// `messages` published straight to a fresh stream of `replicas` replicas
/// capturing their prefix: the rate from the first send to the last
/// acknowledgement.
async fn direct_round(
    jetstream: &jetstream::Context,
    messages: &[(String, PublishMessage)],
    replicas: usize,
) -> Result<f64> {
    let stream = format!("DIRECT_{}", uuid::Uuid::now_v7().simple());
    let prefix = messages
        .first()
        .and_then(|(subject, _)| subject.split('.').next())
        .unwrap_or("direct");
    jetstream
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let started = Instant::now();
    for chunk in messages.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (subject, message) in chunk {
            acks.push(
                jetstream
                    .send_publish(subject.clone(), message.clone())
                    .await
                    .map_err(nats)?,
            );
        }
        for ack in acks {
            ack.await.map_err(nats)?;
        }
    }
    let rate = per_second(messages.len(), started.elapsed());
    verified(jetstream, &stream, messages.len()).await?;
    Ok(rate)
}

/// Records when each message reached the handler, by CloudEvent id.
#[derive(Clone, Default)]
struct Stamps(Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>);

#[cqrskit::async_trait]
impl cqrskit::nats::Handler<cqrskit::postgres::sqlx::PgConnection> for Stamps {
    async fn handle(
        &self,
        event: &CloudEvent,
        _transaction: &mut cqrskit::postgres::sqlx::PgConnection,
    ) -> std::result::Result<(), BoxError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(event.id.clone(), Instant::now());
        Ok(())
    }
}

impl Stamps {
    /// Waits until the handler saw `id`; the time it did.
    async fn wait_for(&self, id: &str) -> Result<Instant> {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let seen = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(id)
                .copied();
            if let Some(seen) = seen {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                return Err(BenchError::Verification(format!(
                    "relay latency: message {id} never reached the handler"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    }
}

/// End to end: from an append's commit to the consumer's handler, through a
/// running relay and JetStream; the baseline publishes the same message
/// straight to JetStream (from its acknowledgement to the same consumer's
/// handler). `config.lag_samples` events, one every 10 ms.
pub(crate) async fn relay_latency(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    use crate::report::{Latency, quantile};
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let jetstream = jetstream::new(async_nats::connect(&url).await.map_err(nats)?);
    let sandbox = Sandbox::new(pool).await?;
    let prefix = format!("lat{}", uuid::Uuid::now_v7().simple());
    let options = RelayOptions::new(&prefix, "/bench");
    let stream = options
        .get_stream()
        .map(|stream| stream.get_name().to_owned())
        .unwrap_or_default();
    let relay = Arc::new(ProjectionRunner::new(
        sandbox.store.clone(),
        Arc::new(Relay::new(
            format!("relay_{prefix}"),
            jetstream.clone(),
            EveryAddition,
            options,
        )),
    ));
    relay.setup().await?;
    let stamps = Stamps::default();
    let consumer = Arc::new(cqrskit::nats::Consumer::new(
        cqrskit::postgres::PostgresInbox::new(&sandbox.store),
        jetstream.clone(),
        stamps.clone(),
        cqrskit::nats::ConsumerOptions::new(&stream, "latency"),
    ));
    consumer.setup().await.map_err(nats)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running_relay = tokio::spawn({
        let (relay, mut stopped) = (relay.clone(), stopped.clone());
        async move {
            relay
                .run(async move {
                    let _ = stopped.changed().await;
                })
                .await
        }
    });
    let running_consumer = tokio::spawn({
        let (consumer, mut stopped) = (consumer.clone(), stopped);
        async move {
            consumer
                .run(async move {
                    let _ = stopped.changed().await;
                })
                .await
        }
    });

    let tallies = CommandPipeline::<Tally>::new(Arc::new(sandbox.store.clone()), ());
    let mut framework = Vec::with_capacity(config.lag_samples);
    for _ in 0..config.lag_samples {
        let outcome = tallies.execute("t", AddMany { count: 1 }).await?;
        let committed = Instant::now();
        let id = outcome.events[0].event_id.to_string();
        framework.push(stamps.wait_for(&id).await? - committed);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut baseline = Vec::with_capacity(config.lag_samples);
    for n in 0..config.lag_samples {
        let (id, message) = direct_message("tally/direct", n)?;
        jetstream
            .send_publish(format!("{prefix}.tally.direct"), message)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        let acknowledged = Instant::now();
        baseline.push(stamps.wait_for(&id).await? - acknowledged);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    running_relay.await.map_err(BenchError::task)??;
    running_consumer
        .await
        .map_err(BenchError::task)?
        .map_err(nats)?;
    jetstream.delete_stream(&stream).await.map_err(nats)?;
    sandbox.drop().await?;
    let max = framework.iter().max().copied().unwrap_or_default();
    let baseline_max = baseline.iter().max().copied().unwrap_or_default();
    let latency = Latency {
        p50: quantile(&mut framework, 0.5),
        p99: quantile(&mut framework, 0.99),
        baseline_p50: quantile(&mut baseline, 0.5),
        baseline_p99: quantile(&mut baseline, 0.99),
    };
    Ok(vec![
        Report {
            max: None,
            peer: None,
            peer_latency: None,
            scenario: "relay-latency",
            framework: latency.p99.as_secs_f64() * 1e3,
            baseline: latency.baseline_p99.as_secs_f64() * 1e3,
            unit: "p99 ms",
            latency: Some(latency),
        }
        .with_max(max, baseline_max),
    ])
}
