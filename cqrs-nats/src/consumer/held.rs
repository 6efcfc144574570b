//! Stream order across retries: a message whose handler failed is retried
//! in place, and the later messages of its stream wait behind it.
//!
//! JetStream's own redelivery (a negative acknowledgement with a delay)
//! sends a failed message again after the messages that came after it, so
//! one transient failure would reorder its stream. [`Consumer::run`] keeps
//! a failed message instead, with the messages of the same stream that
//! arrive meanwhile; the other streams' messages are handled meanwhile. A
//! stream is a CloudEvent's `source` with its `subject` (with the NATS
//! subject for an event that has no `subject`).
//!
//! Held messages are told to JetStream as in progress by a task of their
//! own, whatever the consumer's loop is doing (a slow handler of another
//! stream, a database outage), so they are not delivered again meanwhile;
//! one delivered again all the same (a notice lost) replaces its earlier
//! delivery in the queue. What is held when the consumer stops (or dies) is
//! delivered again after `ack_wait`, to whichever instance pulls then:
//! negative acknowledgements would not hasten it, as JetStream hands them
//! to the stopped consumer's pull request, which lives on until it expires.
//!
//! [`Consumer::run`]: super::Consumer::run

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio::time::Instant;

use super::Decoded;

/// The streams waiting for a failed message to be retried.
#[derive(Default)]
pub(super) struct Held {
    streams: HashMap<String, Waiting>,
    /// Every held message by stream sequence, for the progress notices.
    alive: Alive,
}

/// Held messages by stream sequence, shared with the task that keeps them
/// in progress.
type Alive = Arc<Mutex<HashMap<u64, jetstream::Message>>>;

/// One stream's failed message and those after it.
pub(super) struct Waiting {
    /// When the first message is tried again.
    pub(super) due: Instant,
    /// Attempts at the first message so far.
    pub(super) attempts: i64,
    /// The failed message first, then those of its stream that came after
    /// it, in delivery order.
    pub(super) messages: VecDeque<(jetstream::Message, Decoded)>,
}

/// A message's stream sequence (0 when JetStream did not say).
fn sequence(message: &jetstream::Message) -> u64 {
    message
        .info()
        .map(|info| info.stream_sequence)
        .unwrap_or_default()
}

impl Held {
    /// The stream of `message`, read as `decoded`; `None` for what is no
    /// CloudEvent (never retried).
    pub(super) fn stream_of(message: &jetstream::Message, decoded: &Decoded) -> Option<String> {
        let Decoded::Event(event) = decoded else {
            return None;
        };
        let subject = event.subject.as_deref().unwrap_or(message.subject.as_str());
        Some(format!("{}\u{0}{subject}", event.source))
    }

    fn alive(&self) -> std::sync::MutexGuard<'_, HashMap<u64, jetstream::Message>> {
        // Only ever changed whole, entry by entry: a panic leaves it usable.
        self.alive.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `stream` waits for a failed message.
    pub(super) fn holds(&self, stream: &str) -> bool {
        self.streams.contains_key(stream)
    }

    /// Queues `message` behind the failed message of `stream`, which must
    /// be held; a delivery again of a message held already takes its place.
    pub(super) fn queue(&mut self, stream: &str, message: jetstream::Message, decoded: Decoded) {
        let Some(waiting) = self.streams.get_mut(stream) else {
            return;
        };
        let seq = sequence(&message);
        // The field, not `alive()`: `waiting` borrows `streams` meanwhile.
        self.alive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq, message.clone());
        match waiting
            .messages
            .iter_mut()
            .find(|(held, _)| seq != 0 && sequence(held) == seq)
        {
            Some(entry) => *entry = (message, decoded),
            None => waiting.messages.push_back((message, decoded)),
        }
    }

    /// Holds `stream` at `waiting`'s first message.
    pub(super) fn hold(&mut self, stream: String, waiting: Waiting) {
        {
            let mut alive = self.alive();
            for (message, _) in &waiting.messages {
                alive.insert(sequence(message), message.clone());
            }
        }
        self.streams.insert(stream, waiting);
    }

    /// Stops keeping `message` in progress: it was settled.
    pub(super) fn settled(&self, message: &jetstream::Message) {
        self.alive().remove(&sequence(message));
    }

    /// When the next failed message is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.streams.values().map(|waiting| waiting.due).min()
    }

    /// A stream whose failed message is due by `now`, taken out (its
    /// messages are still kept in progress until settled).
    pub(super) fn take_due(&mut self, now: Instant) -> Option<(String, Waiting)> {
        let stream = self
            .streams
            .iter()
            .find(|(_, waiting)| waiting.due <= now)
            .map(|(stream, _)| stream.clone())?;
        self.streams.remove_entry(&stream)
    }

    /// A task telling JetStream every `interval` that each held message is
    /// still being worked on (which restarts its acknowledgement wait);
    /// aborted when the returned guard is dropped.
    pub(super) fn keep_in_progress(&self, interval: Duration) -> KeepInProgress {
        let alive = self.alive.clone();
        let interval = interval.max(Duration::from_millis(10));
        KeepInProgress(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let messages: Vec<jetstream::Message> = alive
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .cloned()
                    .collect();
                for message in messages {
                    // A notice lost is a redelivery, which takes its
                    // original's place in the queue.
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        }))
    }
}

/// The task keeping held messages in progress; aborted when dropped.
pub(super) struct KeepInProgress(tokio::task::JoinHandle<()>);

impl Drop for KeepInProgress {
    fn drop(&mut self) {
        self.0.abort();
    }
}
