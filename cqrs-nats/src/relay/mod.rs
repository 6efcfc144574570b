//! The relay: the global log, published to JetStream.
//!
//! A relay is a projector, run by the PostgreSQL store's projection runner:
//! it tails the log gap-safe from a checkpoint of its own, under a fenced
//! lease (one relay active per name), with the runner's retries and its
//! stop-or-park policy for an event that keeps failing. For each batch it
//! publishes every selected event and waits for JetStream to acknowledge
//! them all; only then does the runner commit the checkpoint past them.
//!
//! What JetStream stores is always in log order, a prefix of what the relay
//! sent: each message states the stream sequence it must follow, so one
//! lost in a crash or refused makes JetStream refuse every message after it
//! too, until the relay sends it again (see `chain`). A relay that dies
//! after JetStream stored a batch and before its checkpoint committed reads
//! from the stream where it stands when it resumes, and does not send what
//! the stream holds again; each message's `Nats-Msg-Id` is its event id
//! besides, so JetStream drops a copy within its duplicate window. The
//! batch the runner reads ahead is published while the current one is
//! acknowledged (see `ahead`).

mod ahead;
mod chain;
mod options;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use cqrskit_core::{BoxError, EventEnvelope, Position, Projector};

use serde_json::Value;

pub use self::chain::{POSITION_HEADER, RELAY_HEADER};
pub use self::options::{RelayOptions, StreamSpec};

use self::ahead::{Lane, Pending, Sending};
use self::chain::Chain;
use crate::cloudevent::{CloudEvent, JSON};
use crate::publication::{Outgoing, Publication};

/// Publishes the events a [`Publication`] selects to JetStream, as
/// CloudEvents. Run it with a `ProjectionRunner` (see the module docs).
pub struct Relay<P> {
    name: String,
    jetstream: jetstream::Context,
    publication: P,
    options: RelayOptions,
    lane: Lane,
}

impl<P: Publication> Relay<P> {
    /// A relay named `name` (its checkpoint's and lease's name: one relay of
    /// a name is active at a time), publishing through `jetstream`.
    pub fn new(
        name: impl Into<String>,
        jetstream: jetstream::Context,
        publication: P,
        options: RelayOptions,
    ) -> Self {
        Self {
            name: name.into(),
            jetstream,
            publication,
            options,
            lane: Lane::new(),
        }
    }

    /// The relay's name (its checkpoint's and lease's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stored type names of the events it publishes.
    pub fn event_types(&self) -> &'static [&'static str] {
        self.publication.event_types()
    }

    /// The subject of `outgoing` for `event`:
    /// `<prefix>.<aggregate type>.<token>.<slice>.<route>`: the stream's
    /// slice (0 to 1023, fixed forever), then its top five bits as five
    /// `0`/`1` tokens (see [`ConsumerPartition`](crate::ConsumerPartition)),
    /// which let a consumer split by slice read each partition through one
    /// filter subject, each stream's messages in one partition.
    pub fn subject(&self, event: &EventEnvelope<P::Event>, outgoing: &Outgoing) -> String {
        let token = outgoing
            .subject_token
            .as_deref()
            .unwrap_or(&event.event_type);
        let slice = event.stream.slice();
        format!(
            "{}.{}.{}.{slice}.{}",
            self.options.subject_prefix,
            subject_token(&event.stream.aggregate_type),
            subject_token(token),
            crate::route::route_tokens(slice)
        )
    }

    /// The CloudEvent `outgoing` is for `event`: the event id as `id`, the
    /// recording time as `time`, `<aggregate type>/<aggregate id>` as
    /// `subject`, and the extensions `correlationid`, `causationid`,
    /// `streamversion`, `schemaversion` and `slice` (the stream's, as in the
    /// NATS subject).
    pub fn cloud_event(&self, event: &EventEnvelope<P::Event>, outgoing: Outgoing) -> CloudEvent {
        let mut extensions = std::collections::BTreeMap::new();
        if let Some(correlation) = event.metadata.correlation_id {
            extensions.insert(
                "correlationid".to_owned(),
                Value::String(correlation.to_string()),
            );
        }
        if let Some(causation) = event.metadata.causation_id {
            extensions.insert(
                "causationid".to_owned(),
                Value::String(causation.to_string()),
            );
        }
        extensions.insert("streamversion".to_owned(), Value::from(event.version));
        extensions.insert("schemaversion".to_owned(), Value::from(event.event_version));
        extensions.insert("slice".to_owned(), Value::from(event.stream.slice()));
        CloudEvent {
            id: event.event_id.to_string(),
            source: self.options.source.clone(),
            event_type: outgoing.event_type,
            time: Some(event.recorded_at),
            subject: Some(format!(
                "{}/{}",
                event.stream.aggregate_type, event.stream.aggregate_id
            )),
            data_content_type: JSON.to_owned(),
            data: outgoing.data,
            extensions,
        }
    }

    /// The subjects the relay publishes under: `<subject_prefix>.>`.
    fn subjects(&self) -> String {
        format!("{}.>", self.options.subject_prefix)
    }

    /// Where the relay stands in its stream, read from JetStream when not
    /// known (and `may_read`).
    async fn chain<'a>(
        &self,
        sending: &'a mut Sending,
        may_read: bool,
    ) -> Result<&'a mut Chain, BoxError> {
        if sending.chain.is_none() {
            if !may_read {
                return Err("no chain to extend".into());
            }
            let chain = Chain::read(
                &self.jetstream,
                &self.name,
                self.options.stream.as_ref(),
                &self.subjects(),
            )
            .await?;
            tracing::debug!(relay = %self.name, ?chain, "relay chain read from the stream");
            sending.chain = Some(chain);
        }
        Ok(sending
            .chain
            .as_mut()
            .expect("the chain was read just above"))
    }

    /// Sends one event's message, if the publication selects it and the
    /// stream does not hold it yet; the acknowledgement is awaited later.
    /// With `may_read` false (sending ahead), only an unbroken chain is
    /// extended: reading the chain again is for the batch that resumes
    /// from the checkpoint, in log order, never for what goes ahead of it.
    async fn send(
        &self,
        sending: &mut Sending,
        event: &EventEnvelope<P::Event>,
        may_read: bool,
    ) -> Result<Option<Pending>, BoxError> {
        let Some(outgoing) = self.publication.publish(event)? else {
            return Ok(None);
        };
        let subject = self.subject(event, &outgoing);
        let (headers, body) = self
            .cloud_event(event, outgoing)
            .encode(self.options.mode)?;
        let chain = self.chain(sending, may_read).await?;
        if chain.holds(event.position) {
            tracing::debug!(relay = %self.name, event_id = %event.event_id, position = %event.position, "the stream holds the event already; not sent again");
            return Ok(None);
        }
        let mut message = PublishMessage::build()
            .headers(headers)
            .message_id(event.event_id.to_string())
            .header(POSITION_HEADER, event.position.to_string().as_str())
            .header(RELAY_HEADER, self.name.as_str())
            .payload(body);
        // JetStream checks no expectation of 0: the first message of an
        // empty stream; a later one still finds the stream empty if it was
        // lost.
        if chain.last_sequence > 0 {
            message = message.expected_last_sequence(chain.last_sequence);
        }
        match self.jetstream.send_publish(subject, message).await {
            Ok(ack) => {
                let pending = Pending::new(ack, event.event_id, chain);
                chain.last_sequence += 1;
                Ok(Some(pending))
            }
            Err(error) => {
                sending.chain = None;
                Err(format!("publishing event {}: {error}", event.event_id).into())
            }
        }
    }
}

impl<P: Publication> Relay<P> {
    /// A batch failed with `error`: nothing is sent ahead of it any more,
    /// and a server that stopped answering is left for another.
    async fn failed(&self, error: BoxError) -> BoxError {
        self.lane.sent(None);
        crate::silence::reconnect_if_silent(&self.jetstream.client(), &self.name).await;
        error
    }
}

/// A subject token: what NATS would read as a separator or a wildcard
/// replaced by `_`.
fn subject_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whatever the runner's transaction is (`C`): a relay writes nothing in
/// it, it publishes.
#[async_trait]
impl<P: Publication, C: ?Sized + Send> Projector<C> for Relay<P> {
    type Event = P::Event;

    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.publication.event_types()
    }

    /// A relay's stream holds the events in log order: it runs whole and
    /// stops at an event it cannot publish (never parks it).
    fn requires_log_order(&self) -> bool {
        true
    }

    async fn project(
        &self,
        event: &EventEnvelope<Self::Event>,
        context: &mut C,
    ) -> Result<(), BoxError> {
        self.project_batch(std::slice::from_ref(event), context)
            .await
    }

    /// Sends the batch's messages in log order (those sent ahead are not
    /// sent again), then waits for every acknowledgement: the runner commits
    /// the checkpoint only after this returns. A failed send or
    /// acknowledgement fails the batch; the runner then goes through it
    /// event by event, and what JetStream stored already is not sent again
    /// (the chain is read from the stream first).
    async fn project_batch(
        &self,
        events: &[EventEnvelope<Self::Event>],
        _context: &mut C,
    ) -> Result<(), BoxError> {
        let mut pending = Vec::with_capacity(events.len());
        {
            let mut sending = self.lane.send().await;
            for event in events {
                let sent = match sending.take(event.event_id) {
                    Some(sent) => sent,
                    None => match self.send(&mut sending, event, true).await {
                        Ok(sent) => sent,
                        Err(error) => return Err(self.failed(error).await),
                    },
                };
                pending.extend(sent);
            }
            // What is still ahead went out after this batch, and counts.
            if sending.nothing_ahead() {
                self.lane.sent(events.last().map(|event| event.position));
            }
        }
        let published = pending.len() as u64;
        for message in pending {
            if let Err(error) = message.confirm(&self.lane).await {
                return Err(self.failed(error).await);
            }
        }
        metrics::counter!(crate::telemetry::RELAY_PUBLISHED, "relay" => self.name.clone())
            .increment(published);
        Ok(())
    }

    /// Sends the batch read ahead while the one before it is acknowledged
    /// and committed, once that one went out whole; stops quietly at an
    /// event that fails (its batch then sends it, and fails there).
    async fn look_ahead(&self, after: Position, events: &[EventEnvelope<Self::Event>]) {
        let Some(mut ahead) = self.lane.send_after(after).await else {
            return;
        };
        for event in events {
            match self.send(&mut ahead, event, false).await {
                Ok(sent) => ahead.push(event.event_id, sent),
                Err(error) => {
                    tracing::debug!(relay = %self.name, event_id = %event.event_id, %error, "sending ahead stopped; the batch sends the rest");
                    self.lane.sent(None);
                    return;
                }
            }
        }
        self.lane.sent(events.last().map(|event| event.position));
    }

    /// Creates the stream when the options name one and it is missing,
    /// capturing `<subject_prefix>.>` with the duplicate window asked for,
    /// with 3 replicas in a cluster unless the options say otherwise.
    async fn setup(&self, _context: &mut C) -> Result<(), BoxError> {
        let Some(stream) = &self.options.stream else {
            return Ok(());
        };
        self.jetstream
            .get_or_create_stream(
                stream.config(&self.subjects(), chain::clustered(&self.jetstream)),
            )
            .await?;
        Ok(())
    }
}
