//! Publishing the next batch while the current one is acknowledged: the
//! messages a relay sent ahead, and the order they must keep.
//!
//! The runner hands the batch it read ahead to `look_ahead` while the
//! current batch is still being acknowledged and committed. Sending it then
//! keeps JetStream busy across the gap between two batches; the checkpoint
//! still passes an event only after its acknowledgement, because the next
//! `project_batch` awaits the acknowledgements of what was sent ahead.
//!
//! Order: every message goes out on one connection, and messages are sent
//! ahead only once the whole batch before them was sent, under the same lock
//! as `project_batch`'s sending. A batch that then does not match what was
//! sent ahead (a retry after a failure, another relay's progress) sends its
//! events itself; what went ahead is dropped by JetStream as a copy, or was
//! never acknowledged and is sent again.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use cqrskit_core::Position;
use tokio::sync::{Mutex, MutexGuard, watch};
use uuid::Uuid;

/// How long a look-ahead waits for the batch before it to be sent: past
/// that, the runner has moved on or the batch failed.
const WAIT_FOR_BATCH: Duration = Duration::from_secs(1);

/// The relay's sending side: one sender at a time, in log order.
pub(super) struct Lane {
    sending: Mutex<Ahead>,
    /// The last event of the last batch sent whole, `None` after a failure.
    sent_through: watch::Sender<Option<Position>>,
}

/// What went out ahead of its batch, in log order: each event's id and its
/// acknowledgement, `None` when the publication did not select it.
#[derive(Default)]
pub(super) struct Ahead(VecDeque<(Uuid, Option<PublishAckFuture>)>);

impl Ahead {
    /// The acknowledgement of `event_id` when it went out ahead, as the next
    /// in line; `None` when it did not (what went ahead is then dropped: its
    /// order can no longer be vouched for).
    pub(super) fn take(&mut self, event_id: Uuid) -> Option<Option<PublishAckFuture>> {
        match self.0.front() {
            Some((id, _)) if *id == event_id => self.0.pop_front().map(|(_, ack)| ack),
            _ => {
                self.0.clear();
                None
            }
        }
    }

    /// Records that `event_id` went out (or was not selected).
    pub(super) fn push(&mut self, event_id: Uuid, ack: Option<PublishAckFuture>) {
        self.0.push_back((event_id, ack));
    }

    /// Whether nothing sent ahead waits for its batch.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Lane {
    pub(super) fn new() -> Self {
        Self {
            sending: Mutex::new(Ahead::default()),
            sent_through: watch::Sender::new(None),
        }
    }

    /// The right to send, with what went ahead of the caller's batch.
    pub(super) async fn send(&self) -> MutexGuard<'_, Ahead> {
        self.sending.lock().await
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
    pub(super) async fn send_after(&self, after: Position) -> Option<MutexGuard<'_, Ahead>> {
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
        let guard = self.sending.lock().await;
        (*self.sent_through.borrow() == Some(after)).then_some(guard)
    }
}
