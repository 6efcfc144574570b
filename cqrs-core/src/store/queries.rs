//! Lookups across the log that tools and operators make: a business
//! transaction by its correlation id, the events of a time range.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::LogFilter;
use crate::{StoreError, StoredEvent};

/// Lookups across the log for tools and operators, beside the
/// [`EventStore`](super::EventStore) contract: a backend may leave them out.
/// A store that answers them hands them out through
/// [`EventStore::queries`](super::EventStore::queries).
#[async_trait]
pub trait EventQueries: Send + Sync {
    /// Up to `limit` events of one business transaction (every event whose
    /// metadata carries `correlation_id`), in log order.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn events_by_correlation(
        &self,
        correlation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events recorded at or after `from` and before `until`
    /// that `filter` lets through, ordered by recording time, then log order.
    ///
    /// # Errors
    ///
    /// Back-end failures, or a stored row that cannot be read.
    async fn events_in_time_range(
        &self,
        filter: &LogFilter,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}
