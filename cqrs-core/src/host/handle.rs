//! What the application holds of its host while it runs: the health view
//! and read-your-writes on any projection it hosts.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::error::HostError;
use super::hosted::{Hosted, Report};
use crate::Position;

/// Where a hosted service is in its life.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
#[non_exhaustive]
pub enum ServiceState {
    /// Added; the host has not started it (it prepares the ground first).
    Starting,
    /// Running.
    Running,
    /// Its run returned without a failure: after the host's shutdown (or
    /// on its own, which the host logs as a warning).
    Stopped,
    /// Failed: ended with this failure (a panic included), failed to
    /// prepare, or did not stop within the host's grace period.
    Failed(String),
}

/// One service in the health view.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceHealth {
    /// Its name.
    pub name: String,
    /// Where it is in its life.
    #[serde(flatten)]
    pub state: ServiceState,
    /// What it says of itself (only asked while it runs).
    pub report: Option<Report>,
}

/// The health of everything a host runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// True when every service runs and says it is healthy.
    pub healthy: bool,
    /// Each service, in the order it was added.
    pub services: Vec<ServiceHealth>,
}

/// A service and where it is.
pub(super) struct Entry {
    pub(super) service: Arc<dyn Hosted>,
    pub(super) state: Mutex<ServiceState>,
}

impl Entry {
    pub(super) fn set(&self, state: ServiceState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn state(&self) -> ServiceState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The services of one host, shared with its handles: a handle taken
/// before a service was added sees it too (a router made before the host
/// is complete waits for a projection added after it).
pub(super) type Registry = Arc<RwLock<Vec<Arc<Entry>>>>;

/// A cheap, cloneable view of a [`Host`](super::Host): give it to request
/// handlers.
#[derive(Clone)]
pub struct HostHandle {
    pub(super) registry: Registry,
}

impl HostHandle {
    pub(super) fn entries(&self) -> Vec<Arc<Entry>> {
        self.registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of the services, in the order they were added.
    pub fn services(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|entry| entry.service.name().to_owned())
            .collect()
    }

    /// Waits until the projection `name` (a projection runner's or a
    /// partitioned projection's name) has applied the log up to
    /// `position`, at most `timeout`: read-your-writes after a command
    /// whose events end at `position`. False when it has not by then.
    ///
    /// # Errors
    ///
    /// [`HostError::NotFound`] when the host has no projection of that
    /// name; [`HostError::Service`] when the projection could not tell.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, HostError> {
        let entry = self
            .entries()
            .into_iter()
            .find(|entry| entry.service.name() == name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        match entry.service.wait_for(position, timeout).await {
            Some(result) => result.map_err(|source| HostError::Service {
                service: name.to_owned(),
                source,
            }),
            None => Err(HostError::NotFound(name.to_owned())),
        }
    }

    /// Every service's state, and the report of those running, read now.
    pub async fn health(&self) -> Health {
        let mut services = Vec::new();
        for entry in self.entries() {
            let state = entry.state();
            let report = match state {
                ServiceState::Running => Some(entry.service.report().await),
                _ => None,
            };
            services.push(ServiceHealth {
                name: entry.service.name().to_owned(),
                state,
                report,
            });
        }
        Health {
            healthy: services.iter().all(|service| {
                service.state == ServiceState::Running
                    && service.report.as_ref().is_some_and(|report| report.healthy)
            }),
            services,
        }
    }
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("services", &self.services())
            .finish()
    }
}
