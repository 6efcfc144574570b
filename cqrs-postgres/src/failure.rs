//! What a failure of PostgreSQL means for the caller, decided in one place:
//! by the error's SQLSTATE class (and, for errors that never reached the
//! server, by what sqlx says), whether the connection is gone, whether
//! trying the same again may succeed, and whether a write may have
//! committed although it failed.
//!
//! The store maps every database error through [`classify`]; a projector or
//! handler that runs statements of its own can use it the same way.

/// What kind of failure a PostgreSQL error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The connection is gone, or the server is going away: class 08
    /// (connection exception), 57P01 (terminated by an administrator),
    /// 57P02 (crash shutdown), 25P03 and 57P05 (the session ended for idling
    /// in a transaction, or at all), an I/O or protocol failure. Retrying on a
    /// new connection may succeed; a write sent before it may have
    /// committed.
    ConnectionLost,
    /// No connection could be had: the pool timed out or is closed, the
    /// server does not accept one yet (57P03, starting up or in recovery)
    /// or no more (53300, too many connections). Nothing was sent; retrying
    /// later may succeed.
    NoConnection,
    /// The server refused the statement for now, and the same statement
    /// may succeed later: a serialization failure (40001), a deadlock
    /// (40P01), a lock not available in time (55P03), a statement cancelled
    /// by its timeout or a request (57014), a transaction that may not
    /// write (25006: a standby, a primary being demoted during a failover).
    /// Nothing of the statement's transaction was committed.
    Retryable,
    /// The statement names a table, a column or a column's kind the store's
    /// migrations create and the schema lacks: 42P01, 42703, 428C9. Apply
    /// the migrations.
    SchemaBehind,
    /// Everything else: integrity (class 23), data (22), syntax and access
    /// (42), resources that will not come back by themselves (53100 disk
    /// full, 53200 out of memory), the database dropped (57P04), and errors
    /// of the client (encoding, decoding, configuration). Trying the same
    /// again fails the same way.
    Permanent,
}

impl Failure {
    /// Whether trying the same operation again may succeed (on a new
    /// connection where the old one is gone).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::ConnectionLost | Self::NoConnection | Self::Retryable
        )
    }

    /// Whether a write that failed this way may have committed all the
    /// same: only when the connection was lost after it was sent (the
    /// answer to `COMMIT` lost). The server's refusals roll back.
    pub fn may_have_committed(self) -> bool {
        self == Self::ConnectionLost
    }
}

/// What kind of failure `error` is (see [`Failure`]).
pub fn classify(error: &sqlx::Error) -> Failure {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Failure::ConnectionLost
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Failure::NoConnection
        }
        sqlx::Error::Database(db) => db
            .code()
            .map_or(Failure::Permanent, |code| of_sqlstate(&code)),
        _ => Failure::Permanent,
    }
}

/// What kind of failure the SQLSTATE `code` is.
pub fn of_sqlstate(code: &str) -> Failure {
    match code {
        "57P01" | "57P02" | "25P03" | "57P05" => Failure::ConnectionLost,
        "57P03" | "53300" => Failure::NoConnection,
        "40001" | "40P01" | "55P03" | "57014" | "25006" => Failure::Retryable,
        "42P01" | "42703" | "428C9" => Failure::SchemaBehind,
        _ if code.starts_with("08") => Failure::ConnectionLost,
        // Class 40 (transaction rollback) is retried whole by its nature.
        _ if code.starts_with("40") => Failure::Retryable,
        _ => Failure::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_their_kind_by_code_then_by_class() {
        for (code, failure) in [
            ("08006", Failure::ConnectionLost),
            ("08000", Failure::ConnectionLost),
            ("57P01", Failure::ConnectionLost),
            ("57P03", Failure::NoConnection),
            ("53300", Failure::NoConnection),
            ("40001", Failure::Retryable),
            ("40002", Failure::Retryable),
            ("25006", Failure::Retryable),
            ("42P01", Failure::SchemaBehind),
            ("42601", Failure::Permanent),
            ("23505", Failure::Permanent),
            ("53100", Failure::Permanent),
            ("57P04", Failure::Permanent),
        ] {
            assert_eq!(of_sqlstate(code), failure, "{code}");
        }
        assert!(Failure::Retryable.is_transient() && !Failure::Retryable.may_have_committed());
        assert!(Failure::ConnectionLost.may_have_committed());
        assert!(!Failure::Permanent.is_transient());
    }
}
