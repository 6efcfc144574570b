//! Running a consumer: the continuous pull, processing each message until
//! it is settled, and resuming after NATS or the database failed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use cqrskit_core::inbox::DeadLetters;
use tokio::time::Instant;

use super::held::{Held, Waiting};
use super::{Consumer, Decoded, Handler, Outcome, next};
use crate::Error;

/// The pause before trying again after a failure: doubling from 100 ms to
/// at most 5 s, back to the start after a success.
struct Pause(Duration);

/// How often the server sends a heartbeat on the consumer's open pull
/// request; two missed ones end the request and the consumer pulls again.
const PULL_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long each pull request lives before the client renews it.
const PULL_EXPIRES: std::time::Duration = std::time::Duration::from_secs(10);

impl Pause {
    const FIRST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self(Self::FIRST)
    }

    fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(Self::LONGEST);
        pause
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Waits `pause`; `false` when `shutdown` completed first.
async fn paused<S: Future<Output = ()>>(shutdown: &mut Pin<&mut S>, pause: Duration) -> bool {
    tokio::select! {
        () = shutdown.as_mut() => false,
        () = tokio::time::sleep(pause) => true,
    }
}

/// What became of one attempt at a message.
enum Worked {
    /// Settled with JetStream: handled, recognised, or dead-lettered.
    Settled,
    /// The handler failed; the message is to be tried again after the
    /// delay, not yet settled.
    Retry(Duration),
    /// `shutdown` completed first, or the partition read was taken over.
    Shutdown,
}

/// Completes at `due`, or never.
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Tells JetStream every `interval` that `message` is still being worked
/// on (which restarts its acknowledgement wait); never ends.
async fn in_progress(message: &jetstream::Message, interval: Duration) -> Infallible {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval).await;
        // A progress notice lost is a redelivery, which the inbox handles.
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

/// How often a running consumer looks for replays an operator asked for.
const REPLAY_REQUESTS_EVERY: Duration = Duration::from_secs(1);

impl<I, H> Consumer<I, H>
where
    I: DeadLetters,
    H: Handler<I::Connection>,
{
    /// Fetches and processes messages until `shutdown` completes.
    ///
    /// A message whose handler fails is retried in place after the
    /// `backoff` delay, up to `max_attempts` attempts, and the later
    /// messages of its stream wait behind it (told to JetStream as in
    /// progress) while the other streams' messages go on: each stream's
    /// messages are handled in the order JetStream delivered them.
    ///
    /// Failures after the start are waited out, not returned, as a
    /// projection runner waits out an unreachable database: a pull that
    /// fails or ends (the NATS server restarting, the consumer deleted) is
    /// opened again (setting the consumer up again) after a pause; a
    /// database failure keeps the message at hand and tries it again after
    /// a pause, telling JetStream it is still in progress so that it is
    /// neither redelivered meanwhile nor charged a delivery (as for a
    /// handler that takes longer than the acknowledgement wait); a failed
    /// acknowledgement leaves the message to JetStream's redelivery, which
    /// the inbox recognises. Each failure is logged (`warn`); pauses grow
    /// from 100 ms to 5 s.
    ///
    /// # Errors
    ///
    /// When the first [`setup`](Self::setup) fails: a missing stream or an
    /// unreachable server at the start is a configuration to fix, not an
    /// outage to wait out.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let consumer = self.setup().await?;
        // Held messages outlive a pull opened again: their acknowledgements
        // go to the same durable consumer.
        let mut held = Held::default();
        let _in_progress = held.keep_in_progress(self.options.ack_wait / 3);
        self.pull_until(consumer, &mut held, shutdown).await;
        Ok(())
    }

    /// [`run`](Self::run)'s loop, until `shutdown` completes.
    async fn pull_until(
        &self,
        consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
        held: &mut Held,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut consumer = Some(consumer);
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown = shutdown;
        let mut pause = Pause::new();
        // A partition's consumer is new: its first delivery is the first.
        let mut next_delivery = 1;
        // Only one lane of a split consumer carries the replays out.
        let mut replays_due = self.lane.replays.then(Instant::now);
        loop {
            let consumer = match consumer.take() {
                Some(consumer) => Ok(consumer),
                None => self.setup().await,
            };
            // The client's continuous pull: it keeps a request open, renews
            // it before it expires and watches the server's heartbeats
            // (every PULL_HEARTBEAT: a request lost with a dead node, as when
            // a cluster's stream leader dies, is noticed within two of them
            // instead of the client's default 15 s each).
            // (Single pull requests in a loop stalled a message for five
            // seconds about once in 400 when a request expired while the
            // message was on its way: the client waits five seconds past a
            // request's expiry for a timeout notice that may not come.)
            let messages = match consumer {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(self.options.batch_size.max(1))
                    .heartbeat(PULL_HEARTBEAT)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                    .map_err(|error| self.nats(error)),
                Err(error) => Err(error),
            };
            match messages {
                Ok(mut messages) => loop {
                    tokio::select! {
                        () = shutdown.as_mut() => return,
                        () = until(replays_due) => {
                            let read = tokio::select! {
                                () = shutdown.as_mut() => return,
                                read = self.carry_out_replays() => read,
                            };
                            // The database away: look again later, not every second.
                            let every = if read { REPLAY_REQUESTS_EVERY } else { REPLAY_REQUESTS_EVERY * 10 };
                            replays_due = Some(Instant::now() + every);
                        }
                        () = until(held.next_due()) => {
                            if !self.retry_due(held, &mut shutdown).await {
                                return;
                            }
                        }
                        message = next(&mut messages) => match message {
                            Some(Ok(message)) => {
                                if !self.in_sequence(&message, &mut next_delivery) {
                                    return;
                                }
                                if !self.take(message, held, &mut shutdown).await {
                                    return;
                                }
                                pause.reset();
                            }
                            Some(Err(error)) => {
                                tracing::warn!(consumer = %self.options.durable, %error, "the pull failed; opening it again");
                                self.pull_failed();
                                crate::silence::reconnect_if_silent(&self.jetstream.client(), &self.options.durable).await;
                                break;
                            }
                            None => {
                                tracing::warn!(consumer = %self.options.durable, "the pull ended; opening it again");
                                break;
                            }
                        },
                    }
                },
                Err(error) => {
                    tracing::warn!(consumer = %self.options.durable, %error, "cannot pull; trying again");
                    self.pull_failed();
                    crate::silence::reconnect_if_silent(
                        &self.jetstream.client(),
                        &self.options.durable,
                    )
                    .await;
                }
            }
            if !paused(&mut shutdown, pause.next()).await {
                return;
            }
        }
    }

    /// Counts a failed pull (`cqrskit_consumer_pull_failures_total`).
    fn pull_failed(&self) {
        metrics::counter!(crate::telemetry::CONSUMER_PULL_FAILURES, "consumer" => self.options.durable.clone())
            .increment(1);
    }

    /// Whether `message` is the delivery that was due (`next`, moved on):
    /// a partition's JetStream consumer has one reader, so a gap in its
    /// delivery sequence is a delivery lost on the way (a connection that
    /// broke with messages in flight). JetStream would send the lost
    /// messages again only after `ack_wait`, behind later messages of
    /// their streams; the partition is read again from its
    /// acknowledgement floor instead (this lane stops, and its instance
    /// takes the partition again with a new JetStream consumer).
    fn in_sequence(&self, message: &jetstream::Message, next: &mut u64) -> bool {
        let Some(fence) = &self.lane.fence else {
            // An unsplit consumer may share its consumer with other
            // instances: gaps are their deliveries.
            return true;
        };
        let Ok(info) = message.info() else {
            return true;
        };
        if info.consumer_sequence > *next {
            tracing::warn!(
                consumer = %self.options.durable,
                partition = fence.partition(),
                expected = *next,
                delivered = info.consumer_sequence,
                "deliveries were lost on the way; reading the partition again from its acknowledgement floor"
            );
            return false;
        }
        *next = (*next).max(info.consumer_sequence + 1);
        true
    }

    /// Replays the dead letters an operator asked to replay
    /// (`cqrs-admin consumer-dead-letters <consumer> replay`): each as
    /// [`replay_dead_letter`](Self::replay_dead_letter) does; one that
    /// fails again stays open with the error, and the request is cleared.
    /// `false` when the requests could not be read.
    async fn carry_out_replays(&self) -> bool {
        let requested = match self.inbox.replays_requested(&self.options.durable).await {
            Ok(requested) => requested,
            Err(error) => {
                tracing::warn!(consumer = %self.options.durable, %error, "cannot read the replays requested; trying again later");
                return false;
            }
        };
        for (source, id) in requested {
            match self.replay_dead_letter(&source, &id).await {
                Ok(true) => {
                    tracing::info!(consumer = %self.options.durable, source, id, "replayed a dead letter, as an operator asked");
                }
                Ok(false) => {
                    tracing::warn!(consumer = %self.options.durable, source, id, "a replay was asked of a dead letter that is no longer open");
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.options.durable, source, id, %error, "replaying a dead letter failed; it stays open");
                    let recorded = self
                        .inbox
                        .replay_failed(self.key(&source, &id), &error.to_string())
                        .await;
                    if let Err(error) = recorded {
                        tracing::warn!(consumer = %self.options.durable, %error, "cannot record the failed replay; it is tried again");
                    }
                }
            }
        }
        true
    }

    /// Takes a message from the pull: queued behind its stream's failed
    /// message if there is one, worked through otherwise (and held when it
    /// fails). `false` when `shutdown` completed first.
    async fn take<S: Future<Output = ()>>(
        &self,
        message: jetstream::Message,
        held: &mut Held,
        shutdown: &mut Pin<&mut S>,
    ) -> bool {
        let decoded = Decoded::for_consumer(&message, &self.options.durable);
        let stream = Held::stream_of(&message, &decoded);
        if let Some(stream) = stream.as_deref().filter(|stream| held.holds(stream)) {
            held.queue(stream, message, decoded);
            return true;
        }
        let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
        match self
            .work_through(&message, &decoded, attempt, shutdown)
            .await
        {
            Worked::Settled => true,
            Worked::Shutdown => false,
            Worked::Retry(delay) => {
                if let Some(stream) = stream {
                    held.hold(
                        stream,
                        Waiting {
                            due: Instant::now() + delay,
                            attempts: attempt,
                            messages: [(message, decoded)].into(),
                        },
                    );
                }
                true
            }
        }
    }

    /// Tries the failed message of a stream whose delay is over again, then
    /// the messages queued behind it, until one fails (the stream is then
    /// held at it) or none is left. `false` when `shutdown` completed first.
    async fn retry_due<S: Future<Output = ()>>(
        &self,
        held: &mut Held,
        shutdown: &mut Pin<&mut S>,
    ) -> bool {
        let Some((stream, mut waiting)) = held.take_due(Instant::now()) else {
            return true;
        };
        let mut attempt = waiting.attempts + 1;
        while let Some((message, decoded)) = waiting.messages.front() {
            match self.work_through(message, decoded, attempt, shutdown).await {
                Worked::Settled => {
                    held.settled(message);
                    waiting.messages.pop_front();
                    attempt = waiting
                        .messages
                        .front()
                        .and_then(|(message, _)| message.info().ok())
                        .map_or(1, |info| info.delivered);
                }
                Worked::Retry(delay) => {
                    waiting.attempts = attempt;
                    waiting.due = Instant::now() + delay;
                    held.hold(stream, waiting);
                    return true;
                }
                Worked::Shutdown => return false,
            }
        }
        true
    }

    /// Works on `message` (read as `decoded`) at attempt `attempt` until
    /// what became of it is known, waiting out database failures: settles
    /// it with JetStream, or reports that the handler failed and when to
    /// try again. While it works and waits, it tells JetStream the message
    /// is in progress a few times per acknowledgement wait, so that a slow
    /// handler or an outage does not have it redelivered.
    async fn work_through<S: Future<Output = ()>>(
        &self,
        message: &jetstream::Message,
        decoded: &Decoded,
        attempt: i64,
        shutdown: &mut Pin<&mut S>,
    ) -> Worked {
        let in_progress = in_progress(message, self.options.ack_wait / 3);
        let mut in_progress = std::pin::pin!(in_progress);
        let mut pause = Pause::new();
        loop {
            let attempted = tokio::select! {
                outcome = self.outcome_of(message, decoded, attempt) => outcome,
                never = &mut in_progress => match never {},
            };
            match attempted {
                Ok(Outcome::Retrying { delivered, reason }) => {
                    let delay = self.backoff(delivered);
                    let (source, id) = match decoded {
                        Decoded::Event(event) => (event.source.as_str(), event.id.as_str()),
                        _ => ("", ""),
                    };
                    tracing::warn!(
                        consumer = %self.options.durable,
                        source,
                        id,
                        subject = %message.subject,
                        attempt = delivered,
                        %reason,
                        retry_in = ?delay,
                        "the handler failed; retrying, the later messages of its stream held back"
                    );
                    return Worked::Retry(delay);
                }
                Ok(outcome) => {
                    if let Err(error) = self.settle(message, &outcome).await {
                        tracing::warn!(consumer = %self.options.durable, %error, "acknowledging failed; JetStream delivers the message again");
                    }
                    return Worked::Settled;
                }
                Err(error @ Error::PartitionLost { .. }) => {
                    tracing::warn!(consumer = %self.options.durable, %error, "stopping: the partition's new holder handles this message");
                    return Worked::Shutdown;
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.options.durable, %error, "keeping the message until the database answers");
                    let waited = tokio::select! {
                        waited = paused(shutdown, pause.next()) => waited,
                        never = &mut in_progress => match never {},
                    };
                    if !waited {
                        return Worked::Shutdown;
                    }
                }
            }
        }
    }

    /// The next message for this consumer, waiting at most `wait`; `None`
    /// when none came. For loops of your own around
    /// [`commit`](Self::commit) and [`acknowledge`](Self::acknowledge).
    ///
    /// # Errors
    ///
    /// When NATS fails, or the consumer cannot be set up.
    pub async fn fetch_one(&self, wait: Duration) -> Result<Option<jetstream::Message>, Error> {
        let consumer = self.setup().await?;
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|error| self.nats(error))?;
        // Bounded here too: past the request's expiry no message can come
        // for it, and the client would otherwise wait five seconds more for
        // the server's timeout notice.
        let deadline = wait.saturating_add(Duration::from_millis(250));
        match tokio::time::timeout(deadline, next(&mut batch)).await {
            Ok(message) => message.transpose().map_err(|error| self.nats(error)),
            Err(_) => Ok(None),
        }
    }
}
