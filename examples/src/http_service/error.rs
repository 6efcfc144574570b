//! Every failure a request can meet, as the HTTP status and JSON body a
//! client can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrskit::{CommandError, ErrorKind, StoreError};
use serde_json::json;

use crate::bank_account::AccountError;

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The request itself is wrong (a body that is not the JSON asked for,
    /// a malformed position): 400, with the reason.
    BadInput(String),
    /// Nothing is at that address: 404.
    NotFound(String),
    /// The account refused the command: 409 when it contradicts the
    /// account's state (opening an open account), 422 when the command
    /// cannot be carried out as asked (an overdraft, a zero amount).
    Rejected(AccountError),
    /// Other writers kept changing the account, past every retry: 409, try
    /// again.
    Conflict(String),
    /// The read model has not caught up with the position asked for within
    /// the wait: 503, with `stale: true`; ask again.
    Behind(String),
    /// The database failed or could not be reached: 503.
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            Self::BadInput(message) => (StatusCode::BAD_REQUEST, "bad_input", message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message),
            Self::Rejected(error) => {
                let status = match error {
                    AccountError::AlreadyOpen => StatusCode::CONFLICT,
                    AccountError::NotOpen => StatusCode::NOT_FOUND,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, "rejected", error.to_string())
            }
            Self::Conflict(message) => (StatusCode::CONFLICT, "conflict", message),
            Self::Behind(message) => {
                let body = json!({ "error": "behind", "message": message, "stale": true });
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
        };
        (status, Json(json!({ "error": kind, "message": message }))).into_response()
    }
}

impl From<CommandError<AccountError>> for ApiError {
    fn from(error: CommandError<AccountError>) -> Self {
        match error {
            CommandError::Rejected(error) => Self::Rejected(error),
            CommandError::Conflict(conflict) => Self::Conflict(conflict.to_string()),
            other => Self::of_kind(other.kind(), other.to_string()),
        }
    }
}

impl ApiError {
    /// A failure of the store or the runner, by its kind: what the caller
    /// sent (an event the store refuses) is 400, anything else 503.
    fn of_kind(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::Rejected => Self::BadInput(message),
            ErrorKind::NotFound => Self::NotFound(message),
            ErrorKind::Conflict => Self::Conflict(message),
            _ => Self::Unavailable(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::of_kind(error.kind(), error.to_string())
    }
}

impl From<cqrskit::postgres::Error> for ApiError {
    fn from(error: cqrskit::postgres::Error) -> Self {
        Self::of_kind(error.kind(), error.to_string())
    }
}

impl From<cqrskit::postgres::sqlx::Error> for ApiError {
    fn from(error: cqrskit::postgres::sqlx::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}
