//! Which events a reader of the global log wants.

use crate::StoredEvent;

/// Which events a reader of the global log wants. Empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only events with one of these stored type names.
    pub event_types: Vec<String>,
    /// Only events of aggregates of these types.
    pub aggregate_types: Vec<String>,
}

impl LogFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events with one of these stored type names.
    pub fn event_types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            event_types: types.into_iter().map(Into::into).collect(),
            aggregate_types: Vec::new(),
        }
    }

    /// Also restricts to aggregates of these types.
    pub fn and_aggregate_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.aggregate_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an event passes the filter.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && (self.aggregate_types.is_empty()
                || self.aggregate_types.contains(&event.stream.aggregate_type))
    }
}
