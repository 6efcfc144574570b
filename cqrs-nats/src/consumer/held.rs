//! Stream order across retries: a message whose handler failed is retried
//! in place, and the later messages of its stream wait behind it.
//!
//! JetStream's own redelivery (a negative acknowledgement with a delay)
//! sends a failed message again after the messages that came after it, so
//! one transient failure would reorder its stream. [`Consumer::run`] keeps
//! a failed message instead, with the messages of the same stream that
//! arrive meanwhile, and tells JetStream they are all in progress; the
//! other streams' messages are handled meanwhile. A stream is a
//! CloudEvent's `source` with its `subject` (with the NATS subject for an
//! event that has no `subject`).
//!
//! [`Consumer::run`]: super::Consumer::run

use std::collections::{HashMap, VecDeque};

use async_nats::jetstream::{self, AckKind};
use tokio::time::Instant;

use super::Decoded;

/// The streams waiting for a failed message to be retried.
#[derive(Default)]
pub(super) struct Held {
    streams: HashMap<String, Waiting>,
}

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

    /// Whether `stream` waits for a failed message.
    pub(super) fn holds(&self, stream: &str) -> bool {
        self.streams.contains_key(stream)
    }

    /// Queues `message` behind the failed message of `stream`, which must
    /// be held.
    pub(super) fn queue(&mut self, stream: &str, message: jetstream::Message, decoded: Decoded) {
        if let Some(waiting) = self.streams.get_mut(stream) {
            waiting.messages.push_back((message, decoded));
        }
    }

    /// Holds `stream` at `waiting`'s first message.
    pub(super) fn hold(&mut self, stream: String, waiting: Waiting) {
        self.streams.insert(stream, waiting);
    }

    /// When the next failed message is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.streams.values().map(|waiting| waiting.due).min()
    }

    /// A stream whose failed message is due by `now`, taken out.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<(String, Waiting)> {
        let stream = self
            .streams
            .iter()
            .find(|(_, waiting)| waiting.due <= now)
            .map(|(stream, _)| stream.clone())?;
        self.streams.remove_entry(&stream)
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Tells JetStream that every held message is still being worked on,
    /// which restarts its acknowledgement wait: held messages are not
    /// delivered again meanwhile.
    pub(super) async fn keep_in_progress(&self) {
        for waiting in self.streams.values() {
            for (message, _) in &waiting.messages {
                // A notice lost is a redelivery, queued behind its original
                // and recognised by the inbox.
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}
