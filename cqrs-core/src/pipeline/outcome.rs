//! What a command did, as the pipeline reports it.

use uuid::Uuid;

use crate::EventEnvelope;
use crate::projector::ProjectionError;

/// What a successful command did.
#[derive(Debug)]
pub struct CommandOutcome<E> {
    /// The command's id: its events' ids derive from it (see
    /// [`command_id`](crate::command_id)). Pass it to
    /// [`execute_once`](crate::CommandPipeline::execute_once) to carry the same
    /// command out again idempotently.
    pub command_id: Uuid,
    /// True when an earlier execution of the same command id had already
    /// stored its events: nothing was appended, and `events` are the ones
    /// stored then.
    pub already_executed: bool,
    /// The stream's version after the command.
    pub version: u64,
    /// The events stored, as committed (empty when the command decided nothing).
    pub events: Vec<EventEnvelope<E>>,
    /// In-process projectors that failed on these events. The events are
    /// stored regardless: do not retry the command; rebuild or catch up the
    /// projector instead.
    pub projector_failures: Vec<ProjectionError>,
}
