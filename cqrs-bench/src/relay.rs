//! relay: events from the global log to JetStream-acknowledged messages,
//! against the same messages published directly with async-nats in the same
//! run.

use std::sync::Arc;
use std::time::Instant;

use cqrskit::nats::async_nats::{self, jetstream};
use cqrskit::nats::{CloudEvent, ContentMode, Outgoing, Publication, Relay, RelayOptions};
use cqrskit::postgres::sqlx::PgPool;
use cqrskit::postgres::{ProjectionRunner, RunnerOptions};
use cqrskit::{BoxError, CommandPipeline, EventEnvelope};

use crate::report::{Report, per_second};
use crate::scenarios::{Sandbox, check};
use crate::tally::{AddMany, Tally, TallyEvent};
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// Every tally event leaves, as `bench.added.v1`.
struct EveryAddition;

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

fn nats(error: impl std::fmt::Display) -> BenchError {
    BenchError::Task(format!(
        "NATS: {error} (scripts/ensure-nats starts a server)"
    ))
}

/// Relays `config.relay_events` events, then publishes the same number of
/// messages of the same shape directly: JetStream publishes with message
/// ids, up to 1000 sent before their acknowledgements are awaited (as the
/// relay does per batch).
pub(crate) async fn relay(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let jetstream = jetstream::new(async_nats::connect(&url).await.map_err(nats)?);
    let sandbox = Sandbox::new(pool).await?;
    let tallies = CommandPipeline::<Tally>::new(Arc::new(sandbox.store.clone()), ());
    let per_stream = 1000.min(config.relay_events.max(1));
    let streams = config.relay_events.div_ceil(per_stream);
    for stream in 0..streams {
        tallies
            .execute(
                &format!("t{stream}"),
                AddMany {
                    count: per_stream as i64,
                },
            )
            .await?;
    }
    let total = streams * per_stream;
    sandbox.analyze().await?;

    let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
    let options = RelayOptions::new(&prefix, "/bench");
    let relayed_stream = options
        .stream
        .clone()
        .map(|stream| stream.name)
        .unwrap_or_default();
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        EveryAddition,
        options,
    );
    let runner =
        ProjectionRunner::new(sandbox.store.clone(), Arc::new(relay)).with_options(RunnerOptions {
            batch_size: 1000,
            ..RunnerOptions::default()
        });
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
    let framework = per_second(total, started.elapsed());
    runner.release_lease().await?;

    // The baseline's messages, encoded before its clock starts.
    let direct_prefix = format!("direct{}", uuid::Uuid::now_v7().simple());
    let direct_stream = format!("DIRECT_{}", uuid::Uuid::now_v7().simple());
    jetstream
        .create_stream(jetstream::stream::Config {
            name: direct_stream.clone(),
            subjects: vec![format!("{direct_prefix}.>")],
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = Vec::with_capacity(total);
    for n in 0..total {
        let event = CloudEvent {
            id: uuid::Uuid::now_v7().to_string(),
            source: "/bench".into(),
            event_type: "bench.added.v1".into(),
            time: Some(cqrskit::postgres::sqlx::types::chrono::Utc::now()),
            subject: Some(format!("tally/t{}", n / per_stream)),
            data_content_type: "application/json".into(),
            data: serde_json::value::to_raw_value(&serde_json::json!({ "n": n }))?,
            extensions: Default::default(),
        };
        let id = event.id.clone();
        let (headers, body) = event.encode(ContentMode::Structured).map_err(nats)?;
        messages.push((id, headers, body));
    }
    let started = Instant::now();
    for chunk in messages.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (id, headers, body) in chunk {
            let message = jetstream::message::PublishMessage::build()
                .headers(headers.clone())
                .message_id(id)
                .payload(body.clone());
            acks.push(
                jetstream
                    .send_publish(format!("{direct_prefix}.tally.Added"), message)
                    .await
                    .map_err(nats)?,
            );
        }
        for ack in acks {
            ack.await.map_err(nats)?;
        }
    }
    let baseline = per_second(total, started.elapsed());

    for name in [&relayed_stream, &direct_stream] {
        let mut stream = jetstream.get_stream(name).await.map_err(nats)?;
        let stored = stream.info().await.map_err(nats)?.state.messages;
        check(
            stored == total as u64,
            format!("relay: stream {name} holds {stored} of {total} messages"),
        )?;
        jetstream.delete_stream(name).await.map_err(nats)?;
    }
    sandbox.drop().await?;
    Ok(vec![Report::new(
        "relay-throughput",
        framework,
        baseline,
        "events/s",
    )])
}
