//! HTTP services on axum (feature `axum`): an [`HttpServer`] the
//! [`Host`](crate::host::Host) runs beside the projections, and an
//! [`HttpError`] that turns every command and store failure into the
//! status a client should act on. A service is then its routes and its
//! domain.
//!
//! | failure | status |
//! | --- | --- |
//! | the aggregate refused the command ([`CommandError::Rejected`]) | 422, or what [`HttpError::from_command`] decides |
//! | a request the store refuses (an event it cannot keep), a bad body | 400 |
//! | nothing there (a projection, a dead letter, a resource) | 404 |
//! | other writers kept changing the aggregate past every retry | 409 |
//! | the database unreachable or busy, a read model behind | 503, `Retry-After: 1` |
//! | the answer to a write lost ([`CommandError::OutcomeUnknown`]) | 503, `Retry-After: 1`, the command id to retry with |
//! | corrupt data, a configuration to fix, anything else | 500 |
//!
//! The body is JSON: `{"error": <kind>, "message": ..., "command_id": ...}`.
//!
//! [`CommandError::Rejected`]: crate::CommandError::Rejected
//! [`CommandError::OutcomeUnknown`]: crate::CommandError::OutcomeUnknown

mod error;
mod server;

pub use self::error::HttpError;
pub use self::server::HttpServer;
