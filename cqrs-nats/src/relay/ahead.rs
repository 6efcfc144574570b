//! Publishing the next batch while the current one is acknowledged: the
//! messages a relay sent ahead, and the order they must keep.
//!
//! The runner hands the batch it read ahead to `look_ahead` while the
//! current batch is still being acknowledged and committed. Sending it then
//! keeps JetStream busy across the gap between two batches; the checkpoint
//! still passes an event only after its acknowledgement, because the next
//! `project_batch` awaits the acknowledgements of what was sent ahead.
//!
//! Order: messages are sent ahead only once the whole batch before them was
//! sent, under the same lock as `project_batch`'s sending, and each states
//! the stream sequence it expects to follow (see `chain`). A batch that then
//! does not match what was sent ahead (a retry after a failure, another
//! relay's progress) sends its events itself after reading the chain again;
//! what went ahead was stored in order, or refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use cqrskit_core::{BoxError, Position};
use tokio::sync::{Mutex, MutexGuard, watch};
use uuid::Uuid;

use super::chain::Chain;

/// How long a look-ahead waits for the batch before it to be sent: past
/// that, the runner has moved on or the batch failed.
const WAIT_FOR_BATCH: Duration = Duration::from_secs(1);

/// The relay's sending side: one sender at a time, in log order.
pub(super) struct Lane {
    sending: Mutex<Sending>,
    /// The last event of the last batch sent whole, `None` after a failure.
    sent_through: watch::Sender<Option<Position>>,
    /// Set when an acknowledgement shows that the chain no longer matches
    /// the stream: it is read again before the next message.
    broken: AtomicBool,
}

/// A message sent and not yet acknowledged.
pub(super) struct Pending {
    ack: PublishAckFuture,
    event_id: Uuid,
    /// The stream it must be stored in.
    stream: std::sync::Arc<str>,
    /// The sequence it gets when stored in chain order.
    sequence: u64,
}

impl Pending {
    /// A message of `event_id` sent into `chain`'s stream, to be stored
    /// after its last sequence (which the caller then moves on).
    pub(super) fn new(ack: PublishAckFuture, event_id: Uuid, chain: &Chain) -> Self {
        Self {
            ack,
            event_id,
            stream: chain.stream.clone(),
            sequence: chain.last_sequence + 1,
        }
    }

    /// Waits until JetStream stored the message.
    ///
    /// # Errors
    ///
    /// When JetStream refused it, or did not answer; the chain is then read
    /// again before the next message.
    pub(super) async fn confirm(self, lane: &Lane) -> Result<(), BoxError> {
        match self.ack.await {
            Ok(ack) if *ack.stream != *self.stream => {
                lane.break_chain();
                Err(format!(
                    "the message of event {} was stored in JetStream stream `{}`, not in the \
                     relay's `{}`: one stream must capture every subject of the relay",
                    self.event_id, ack.stream, self.stream
                )
                .into())
            }
            Ok(ack) => {
                // A copy stored earlier (dropped as a duplicate): the
                // messages sent after it expected a sequence it did not take.
                if ack.sequence != self.sequence {
                    tracing::debug!(event_id = %self.event_id, stream = %self.stream, expected = self.sequence, stored = ack.sequence, "a copy stored earlier: the messages sent after it are sent again");
                    lane.break_chain();
                }
                Ok(())
            }
            Err(error) => {
                lane.break_chain();
                Err(format!(
                    "JetStream did not store the message of event {} in stream `{}`: {error}",
                    self.event_id, self.stream
                )
                .into())
            }
        }
    }
}

/// What the sender holds: the chain, and what went out ahead of its batch.
#[derive(Default)]
pub(super) struct Sending {
    /// Where the relay stands in its stream; `None` until read.
    pub(super) chain: Option<Chain>,
    /// What went out ahead of its batch, in log order: each event's id and
    /// its message, `None` when the publication did not select it or the
    /// stream held it already.
    ahead: VecDeque<(Uuid, Option<Pending>)>,
}

impl Sending {
    /// The message of `event_id` when it went out ahead, as the next in
    /// line; `None` when it did not (what went ahead is then dropped, and
    /// the chain read again: the stream may hold it, or not).
    pub(super) fn take(&mut self, event_id: Uuid) -> Option<Option<Pending>> {
        match self.ahead.front() {
            Some((id, _)) if *id == event_id => self.ahead.pop_front().map(|(_, sent)| sent),
            front => {
                if front.is_some() {
                    self.ahead.clear();
                    self.chain = None;
                }
                None
            }
        }
    }

    /// Records that `event_id` went out (or needed not).
    pub(super) fn push(&mut self, event_id: Uuid, sent: Option<Pending>) {
        self.ahead.push_back((event_id, sent));
    }

    /// Whether nothing sent ahead waits for its batch.
    pub(super) fn nothing_ahead(&self) -> bool {
        self.ahead.is_empty()
    }
}

impl Lane {
    pub(super) fn new() -> Self {
        Self {
            sending: Mutex::new(Sending::default()),
            sent_through: watch::Sender::new(None),
            broken: AtomicBool::new(false),
        }
    }

    /// The right to send, with the chain and what went ahead of the
    /// caller's batch. A chain an acknowledgement found broken is dropped.
    pub(super) async fn send(&self) -> MutexGuard<'_, Sending> {
        let mut sending = self.sending.lock().await;
        if self.broken.swap(false, Ordering::AcqRel) {
            sending.chain = None;
        }
        sending
    }

    /// Marks the chain as no longer matching the stream.
    pub(super) fn break_chain(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// Records how far sending went: `Some(position)` when every event up to
    /// it went out, `None` after a failure (nothing is then sent ahead until
    /// a batch goes out whole).
    pub(super) fn sent(&self, through: Option<Position>) {
        self.sent_through.send_replace(through);
    }

    /// The right to send the events after `after`, once every event up to
    /// it went out (by its batch, or ahead of it); `None` when that did not
    /// happen within the bound, or something else was sent since.
    pub(super) async fn send_after(&self, after: Position) -> Option<MutexGuard<'_, Sending>> {
        let mut sent = self.sent_through.subscribe();
        // The value seen is released at the end of this statement.
        let ready = matches!(
            tokio::time::timeout(
                WAIT_FOR_BATCH,
                sent.wait_for(|through| *through == Some(after)),
            )
            .await,
            Ok(Ok(_))
        );
        if !ready {
            return None;
        }
        let guard = self.send().await;
        (*self.sent_through.borrow() == Some(after)).then_some(guard)
    }
}
