//! Where a projection stands, as an operator reads it, and which
//! projection a partition's row belongs to.

use super::{ProjectionInfo, partition_of};
use crate::Partition;

/// Where a projection (or one partition of it) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProjectionState {
    /// A runner holds its lease and applies its events.
    Running,
    /// No runner holds its lease: none runs it, and the last one gave the
    /// lease up when it stopped.
    Idle,
    /// Its lease ran out without being given up: the runner holding it was
    /// killed, froze, or lost the database. Another runner takes it over at
    /// its next try; if none does, none runs.
    Lapsed,
    /// Its failure policy stopped it at an event, until it is resumed.
    Stopped,
}

impl ProjectionState {
    /// The state's name: `running`, `idle`, `lapsed`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Lapsed => "lapsed",
            Self::Stopped => "stopped",
        }
    }
}

impl ProjectionInfo {
    /// Where it stands.
    pub fn state(&self) -> ProjectionState {
        if self.stopped_at.is_some() {
            ProjectionState::Stopped
        } else if self.running {
            ProjectionState::Running
        } else if self.owner.is_some() {
            // A runner that stops gives its lease up (the owner is
            // cleared); one whose lease ran out under it did not stop.
            ProjectionState::Lapsed
        } else {
            ProjectionState::Idle
        }
    }

    /// For one partition of a partitioned projection: the projection's
    /// name and the partition.
    pub fn partition(&self) -> Option<(&str, Partition)> {
        let partition = partition_of(&self.name)?;
        let (projection, _) = self.name.rsplit_once('[')?;
        Some((projection, partition))
    }
}
