//! Positions in the global log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an event stands in the global log, and the checkpoint type of every
/// reader of that log.
///
/// The log is ordered by `(transaction, sequence)`. `sequence` is unique per
/// event and grows in the order events were appended within a transaction;
/// `transaction` identifies the append that wrote the event. Ordering by the
/// pair, rather than by `sequence` alone, is what lets a store hand out
/// positions before commit and still let readers tail the log without ever
/// skipping an event that commits late (see the PostgreSQL store's docs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Position {
    /// The transaction that appended the event; all events of one append share it.
    pub transaction: u64,
    /// The event's global sequence number, unique across the whole log.
    pub sequence: u64,
}

impl Position {
    /// Before the first event: a reader starting here reads the whole log.
    pub const START: Position = Position {
        transaction: 0,
        sequence: 0,
    };

    /// A position from its two parts.
    pub const fn new(transaction: u64, sequence: u64) -> Self {
        Self {
            transaction,
            sequence,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction, self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_sequence() {
        assert!(Position::START < Position::new(1, 1));
        // A later transaction sorts after an earlier one even with a smaller sequence:
        // the sequence was taken first but committed later.
        assert!(Position::new(1, 9) < Position::new(2, 3));
        assert!(Position::new(2, 3) < Position::new(2, 4));
    }
}
