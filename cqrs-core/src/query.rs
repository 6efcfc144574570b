//! Queries: questions answered from read models.

use std::future::Future;

/// A question to a read model, with the type of its answer.
pub trait Query: Send + 'static {
    /// The answer.
    type Output: Send;
}

/// Answers queries of type `Q`, typically by reading a read model that a
/// [`Projector`](crate::Projector) maintains.
pub trait QueryHandler<Q: Query>: Send + Sync {
    /// Why a query could not be answered.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Answers `query`.
    fn handle(&self, query: Q) -> impl Future<Output = Result<Q::Output, Self::Error>> + Send;
}
