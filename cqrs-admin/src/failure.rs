//! How a command fails: a message on stderr and an exit code a script can
//! act on.

use std::process::ExitCode;

use cqrskit::ErrorKind;
use cqrskit::postgres::Error;

/// A failed command.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The database failed or refused (exit 1).
    Failed(String),
    /// The command line is wrong (exit 2, as clap's own mistakes).
    Usage(String),
    /// What it names does not exist (exit 3).
    NotFound(String),
    /// A runner did not finish in time (exit 4); the work goes on.
    TimedOut(String),
    /// The schema lacks migrations this build ships (exit 5).
    NotCurrent(String),
}

impl Failure {
    /// Any error, as a failure of the database or a refusal.
    pub(crate) fn from_display(error: impl std::fmt::Display) -> Self {
        Self::Failed(error.to_string())
    }

    /// Prints the message and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let (code, message) = match self {
            Self::Failed(message) => (1, message),
            Self::Usage(message) => (2, message),
            Self::NotFound(message) => (3, message),
            Self::TimedOut(message) => (4, message),
            Self::NotCurrent(message) => (5, message),
        };
        eprintln!("cqrs-admin: {message}");
        ExitCode::from(code)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match (error.kind(), &error) {
            (ErrorKind::NotFound, _) => Self::NotFound(error.to_string()),
            (_, Error::SchemaNotCurrent(_)) => Self::NotCurrent(error.to_string()),
            _ => Self::Failed(error.to_string()),
        }
    }
}
