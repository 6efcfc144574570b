//! An axum server as a hosted service.

use std::sync::Mutex;

use axum::Router;
use cqrskit_core::host::{BoxError, Hosted, Report, Shutdown, Stage};
use tokio::net::TcpListener;

/// Serves an axum [`Router`] in a [`Host`](crate::host::Host): it takes
/// work in, so on shutdown it stops first, stops accepting connections and
/// finishes the requests in flight while the projections still run.
pub struct HttpServer {
    name: String,
    address: String,
    parts: Mutex<Option<(TcpListener, Router)>>,
}

impl HttpServer {
    /// Serves `router` on `listener`, as the service `http`.
    pub fn new(listener: TcpListener, router: Router) -> Self {
        let address = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |address| address.to_string());
        Self {
            name: "http".to_owned(),
            address,
            parts: Mutex::new(Some((listener, router))),
        }
    }

    /// Names the service (default `http`): a host with two servers needs
    /// two names.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The address it listens on.
    pub fn address(&self) -> &str {
        &self.address
    }
}

#[cqrskit_core::async_trait]
impl Hosted for HttpServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn stage(&self) -> Stage {
        Stage::Ingress
    }

    /// Serves until the shutdown, then lets the requests in flight finish.
    ///
    /// # Errors
    ///
    /// When serving fails, or it runs a second time.
    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        let taken = self
            .parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((listener, router)) = taken else {
            return Err(format!("the HTTP server `{}` runs once", self.name).into());
        };
        tracing::info!(address = %self.address, "serving HTTP");
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    async fn report(&self) -> Report {
        Report::healthy(format!("listening on {}", self.address))
    }
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
