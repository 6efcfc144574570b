//! Why a host did not start, or what ended while it ran.

use super::hosted::BoxError;
use crate::ErrorKind;

/// A host's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Two services have one name: health and read-your-writes would not
    /// know which is meant. Nothing started.
    #[error("two services are named `{0}`; give one another name")]
    DuplicateName(String),
    /// A step or a service failed to prepare: nothing started.
    #[error("preparing `{step}` failed: {source}")]
    Prepare {
        /// The step's or service's name.
        step: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// No service of that name (or it is not a projection, for
    /// [`wait_for`](super::HostHandle::wait_for)).
    #[error("no projection named `{0}` runs in this host")]
    NotFound(String),
    /// A service failed to answer.
    #[error("`{service}`: {source}")]
    Service {
        /// Its name.
        service: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Services that ended with these failures (the others ran on until the
    /// shutdown), or did not stop within the grace period.
    #[error("{} service(s) failed: {}", .0.len(), .0.iter().map(|(name, error)| format!("`{name}`: {error}")).collect::<Vec<_>>().join("; "))]
    Failed(Vec<(String, BoxError)>),
    /// A service's task panicked.
    #[error("`{service}` panicked: {reason}")]
    Panicked {
        /// Its name.
        service: String,
        /// The panic's message.
        reason: String,
    },
}

impl HostError {
    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::DuplicateName(_) => ErrorKind::Configuration,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Prepare { .. }
            | Self::Service { .. }
            | Self::Failed(_)
            | Self::Panicked { .. } => ErrorKind::Backend,
        }
    }
}
