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

/// Reads a position as [`Display`](fmt::Display) writes it,
/// `<transaction>:<sequence>`: how a command's position travels through a
/// URL or a command line and comes back.
impl std::str::FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ParsePositionError {
            text: text.to_owned(),
        };
        let (transaction, sequence) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Self::new(
            transaction.parse().map_err(|_| invalid())?,
            sequence.parse().map_err(|_| invalid())?,
        ))
    }
}

/// Text that is not a position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a position: expected <transaction>:<sequence>, two whole numbers, as positions are printed"
)]
pub struct ParsePositionError {
    /// The text given.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_as_it_is_printed() {
        let position = Position::new(4490, 17);
        assert_eq!(position.to_string().parse::<Position>(), Ok(position));
        for bad in ["12", "a:1", "1:", ":1", "1:2:3", "-1:2", ""] {
            let error = bad.parse::<Position>().expect_err(bad);
            assert!(
                error.to_string().contains("<transaction>:<sequence>"),
                "{error}"
            );
        }
    }

    #[test]
    fn positions_order_by_transaction_then_sequence() {
        assert!(Position::START < Position::new(1, 1));
        // A later transaction sorts after an earlier one even with a smaller sequence:
        // the sequence was taken first but committed later.
        assert!(Position::new(1, 9) < Position::new(2, 3));
        assert!(Position::new(2, 3) < Position::new(2, 4));
    }
}
