//! Streams: where an aggregate instance's events live, and how a writer states
//! what it expects to find there.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stream of one aggregate instance: its aggregate type and its id.
///
/// Versions inside a stream start at 1 and have no holes; version 0 means the
/// stream holds no event yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    /// The aggregate type, e.g. `"account"` ([`crate::Aggregate::TYPE`]).
    pub aggregate_type: String,
    /// The aggregate instance's id, unique within its type.
    pub aggregate_id: String,
}

impl StreamId {
    /// The stream of aggregate `aggregate_id` of type `aggregate_type`.
    pub fn new(aggregate_type: impl Into<String>, aggregate_id: impl Into<String>) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }

    /// The stream's slice, one of [`SLICES`]: the first 32 bits of the MD5
    /// of `<aggregate type>/<aggregate id>`, modulo [`SLICES`]. Fixed
    /// forever, so whatever is split by slice (a projection's partitions, a
    /// relay's subjects) keeps each stream whole and in order. Stores keep
    /// it with every event.
    pub fn slice(&self) -> u16 {
        use md5::Digest as _;
        let mut hash = md5::Md5::new();
        hash.update(self.aggregate_type.as_bytes());
        hash.update(b"/");
        hash.update(self.aggregate_id.as_bytes());
        let digest = hash.finalize();
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // Below 1024, so it fits.
        (first % u32::from(SLICES)) as u16
    }
}

/// The number of stream slices ([`StreamId::slice`]), fixed forever.
pub const SLICES: u16 = 1024;

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// What a writer expects the stream to look like when it appends: the basis of
/// optimistic concurrency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds. Use for streams with one writer only.
    Any,
    /// The stream must not exist yet (it holds no event).
    NoStream,
    /// The stream must hold at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version (0 = no event).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (0 = empty) satisfies this
    /// expectation.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(expected) => actual == expected,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_accepts_only_matching_streams() {
        assert!(ExpectedVersion::Any.accepts(0) && ExpectedVersion::Any.accepts(7));
        assert!(ExpectedVersion::NoStream.accepts(0) && !ExpectedVersion::NoStream.accepts(1));
        assert!(!ExpectedVersion::StreamExists.accepts(0));
        assert!(ExpectedVersion::StreamExists.accepts(3));
        assert!(ExpectedVersion::Exact(2).accepts(2) && !ExpectedVersion::Exact(2).accepts(3));
    }
}
