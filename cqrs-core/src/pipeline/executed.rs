//! An earlier execution of a command id, found by its first event's id
//! (derived from the command id): what makes `execute_once` and a process
//! manager's commands apply at most once.

use uuid::Uuid;

use super::{CommandOutcome, CommandPipeline};
use crate::{Aggregate, CommandError, StoreError, StreamId, command_id};

impl<A: Aggregate> CommandPipeline<A> {
    /// The outcome of an earlier execution of `command_id` on `stream`, if
    /// one stored events.
    pub(super) async fn executed(
        &self,
        command_id: Uuid,
        stream: &StreamId,
    ) -> Result<Option<CommandOutcome<A::Event>>, CommandError<A::Error>> {
        let first_id = command_id::event_id(command_id, 0);
        let Some(first) = self.store.event_by_id(first_id).await? else {
            return Ok(None);
        };
        if first.stream != *stream {
            return Err(StoreError::EventIdReused {
                event_id: first_id,
                stream: stream.clone(),
            }
            .into());
        }
        let mut events = Vec::new();
        let mut from = first.version;
        'read: loop {
            let batch = self.store.read_stream(stream, from, 100).await?;
            let full = batch.len() == 100;
            for stored in batch {
                if stored.event_id != command_id::event_id(command_id, events.len()) {
                    break 'read;
                }
                from = stored.version + 1;
                events.push(stored.decode::<A::Event>().map_err(StoreError::from)?);
            }
            if !full {
                break;
            }
        }
        Ok(Some(CommandOutcome {
            command_id,
            already_executed: true,
            version: events.last().map_or(first.version, |event| event.version),
            events,
            projector_failures: Vec::new(),
        }))
    }
}
