//! Keeping the inbox small: its records are needed only while a message can
//! still be delivered again.

use std::time::Duration;

use cqrskit_core::inbox::DeadLetters;

use super::{Consumer, Handler};
use crate::Error;

impl<I, H> Consumer<I, H>
where
    I: DeadLetters,
    H: Handler<I::Connection>,
{
    /// Deletes this consumer's inbox records older than `age`, and returns
    /// how many. The inbox recognises a message delivered again only while
    /// its record is there: choose an age beyond the longest a message can
    /// still be delivered (the stream's retention, or at least `ack_wait`
    /// times `max_deliver` plus the backoff).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn prune_inbox(&self, age: Duration) -> Result<u64, Error> {
        self.inbox
            .prune(&self.options.durable, age)
            .await
            .map_err(|error| self.store(error))
    }
}
