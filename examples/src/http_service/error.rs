//! Every failure a request can meet, as the HTTP status and JSON body a
//! client can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrskit::postgres::RunnerError;
use cqrskit::{CommandError, StoreError};
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
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<RunnerError> for ApiError {
    fn from(error: RunnerError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<cqrskit::postgres::sqlx::Error> for ApiError {
    fn from(error: cqrskit::postgres::sqlx::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}
