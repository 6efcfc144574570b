//! A relay in a process of its own, for the tests that kill it with a real
//! signal (`tests/tests/nats_relay.rs`).
//!
//! Relays the bank account's public events (`cqrs_tests::nats::
//! PublicAccountEvents`) until killed. Configured by environment:
//! `DATABASE_URL`, `SCHEMA`, `NATS_URL`, `PREFIX` (the subject prefix; the
//! relay is named `relay_<PREFIX>`), `LEASE_MS`, and optionally
//! `HOLD_AFTER_PUBLISH=1`: after JetStream acknowledged the first batch, the
//! process prints `published` and waits, its checkpoint not yet committed,
//! for the test to kill it there.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cqrs_examples::bank_account::AccountEvent;
use cqrs_tests::env::var;
use cqrs_tests::nats::{PublicAccountEvents, connect};
use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{Relay, RelayOptions};
use cqrskit::postgres::sqlx::PgConnection;
use cqrskit::postgres::{PostgresEventStore, ProjectionRunner, RunnerOptions};
use cqrskit::{BoxError, EventEnvelope, Projector, async_trait};

/// The relay, stopped for good right after its first batch was
/// acknowledged and before the runner could commit the checkpoint.
struct HoldAfterPublish(Relay<PublicAccountEvents>);

#[async_trait]
impl Projector<PgConnection> for HoldAfterPublish {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.0.event_types()
    }

    async fn project(
        &self,
        event: &EventEnvelope<AccountEvent>,
        context: &mut PgConnection,
    ) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), context)
            .await
    }

    async fn project_batch(
        &self,
        events: &[EventEnvelope<AccountEvent>],
        context: &mut PgConnection,
    ) -> Result<(), BoxError> {
        self.0.project_batch(events, context).await?;
        println!("published");
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn setup(&self, context: &mut PgConnection) -> Result<(), BoxError> {
        self.0.setup(context).await
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let store = PostgresEventStore::connect(&var("DATABASE_URL"))
        .await
        .expect("connect")
        .with_schema(&var("SCHEMA"))
        .expect("schema");
    let jetstream = jetstream::new(connect(&var("NATS_URL")).await);
    let prefix = var("PREFIX");
    let relay = Relay::new(
        format!("relay_{prefix}"),
        jetstream,
        PublicAccountEvents,
        RelayOptions::new(&prefix, "/bank"),
    );
    let options = RunnerOptions::default()
        .lease_duration(Duration::from_millis(
            var("LEASE_MS").parse().expect("LEASE_MS"),
        ))
        .poll_interval(Duration::from_millis(50));
    let result = if std::env::var("HOLD_AFTER_PUBLISH").is_ok() {
        ProjectionRunner::new(store, Arc::new(HoldAfterPublish(relay)))
            .with_options(options)
            .run(std::future::pending())
            .await
    } else {
        ProjectionRunner::new(store, Arc::new(relay))
            .with_options(options)
            .run(std::future::pending())
            .await
    };
    if let Err(error) = result {
        eprintln!("relay error: {error}");
        std::process::exit(2);
    }
}
