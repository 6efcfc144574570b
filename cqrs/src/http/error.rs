//! Failures as HTTP answers (the table is in the [module docs](super)).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cqrskit_core::host::HostError;
use cqrskit_core::uuid::Uuid;
use cqrskit_core::{CommandError, ErrorKind, StoreError};

/// Why a request failed, as the status, the kind and the message a client
/// gets. Return it from a handler (`Result<_, HttpError>`): `?` converts
/// command, store, host and extractor failures.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    command_id: Option<Uuid>,
}

impl HttpError {
    /// An answer of `status`, with `kind` (a short machine-readable word)
    /// and `message`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            command_id: None,
        }
    }

    /// The request itself is wrong: 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_input", message)
    }

    /// Nothing is at that address: 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A read model has not caught up with the position asked for within
    /// the wait: 503 with `Retry-After`, and `"stale": true` in the body;
    /// ask again.
    pub fn behind(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "behind", message)
    }

    /// A command's failure, with the status of a domain rejection chosen by
    /// `rejected` (a refusal that contradicts the aggregate's state may be
    /// 409, an aggregate that does not exist 404); every other failure by
    /// its kind.
    pub fn from_command<E: std::fmt::Display>(
        error: CommandError<E>,
        rejected: impl FnOnce(&E) -> StatusCode,
    ) -> Self {
        match error {
            CommandError::Rejected(rejection) => {
                Self::new(rejected(&rejection), "rejected", rejection.to_string())
            }
            CommandError::OutcomeUnknown { command_id, source } => Self {
                command_id: Some(command_id),
                ..Self::of_kind(
                    ErrorKind::OutcomeUnknown,
                    format!(
                        "the outcome of command {command_id} is unknown ({source}); \
                         send it again with this command id"
                    ),
                )
            },
            other => Self::of_kind(other.kind(), other.to_string()),
        }
    }

    /// A failure of the store, a runner or the host, by its kind.
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        let (status, word) = match kind {
            ErrorKind::Rejected => (StatusCode::BAD_REQUEST, "bad_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::OutcomeUnknown => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            ErrorKind::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
            ErrorKind::CorruptData => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data"),
            ErrorKind::Configuration => (StatusCode::INTERNAL_SERVER_ERROR, "configuration"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, word, message)
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its kind, as the body names it.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), kind = self.kind, message = %self.message, "request failed");
        }
        let mut body = serde_json::json!({ "error": self.kind, "message": self.message });
        if self.kind == "behind" {
            body["stale"] = serde_json::Value::Bool(true);
        }
        if let Some(command_id) = self.command_id {
            body["command_id"] = serde_json::Value::String(command_id.to_string());
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl<E: std::fmt::Display> From<CommandError<E>> for HttpError {
    /// A domain rejection is 422 (see [`from_command`](Self::from_command)
    /// to choose another).
    fn from(error: CommandError<E>) -> Self {
        Self::from_command(error, |_| StatusCode::UNPROCESSABLE_ENTITY)
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        Self::of_kind(error.kind(), error.to_string())
    }
}

impl From<HostError> for HttpError {
    fn from(error: HostError) -> Self {
        Self::of_kind(error.kind(), error.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<cqrskit_postgres::Error> for HttpError {
    fn from(error: cqrskit_postgres::Error) -> Self {
        Self::of_kind(error.kind(), error.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<cqrskit_postgres::sqlx::Error> for HttpError {
    /// A read model's query failed: 503 when trying again may succeed (the
    /// connection, a timeout, a lock), 500 otherwise.
    fn from(error: cqrskit_postgres::sqlx::Error) -> Self {
        let kind = if cqrskit_postgres::failure::classify(&error).is_transient() {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Backend
        };
        Self::of_kind(kind, error.to_string())
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: HttpError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().expect("ASCII").to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, retry, serde_json::from_slice(&body).expect("JSON"))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("overdrawn")]
    struct Overdrawn;

    #[tokio::test]
    async fn every_kind_answers_with_the_status_a_client_acts_on() {
        for (kind, status, retry) in [
            (ErrorKind::Rejected, 400, false),
            (ErrorKind::NotFound, 404, false),
            (ErrorKind::Conflict, 409, false),
            (ErrorKind::Unavailable, 503, true),
            (ErrorKind::OutcomeUnknown, 503, true),
            (ErrorKind::Stopped, 503, true),
            (ErrorKind::CorruptData, 500, false),
            (ErrorKind::Configuration, 500, false),
            (ErrorKind::Backend, 500, false),
        ] {
            let (answered, retry_after, body) = answer(HttpError::of_kind(kind, "why")).await;
            assert_eq!(answered.as_u16(), status, "{kind:?}");
            assert_eq!(retry_after.is_some(), retry, "{kind:?}");
            assert_eq!(body["message"], "why");
        }
    }

    #[tokio::test]
    async fn a_command_is_refused_with_422_or_the_status_chosen_and_an_unknown_outcome_names_the_command()
     {
        let (status, _, body) = answer(CommandError::Rejected(Overdrawn).into()).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (422, Some("rejected"))
        );
        assert_eq!(body["message"], "overdrawn");
        let chosen =
            HttpError::from_command(CommandError::Rejected(Overdrawn), |_| StatusCode::CONFLICT);
        assert_eq!(chosen.status(), StatusCode::CONFLICT);

        let command_id = Uuid::now_v7();
        let lost = CommandError::<Overdrawn>::OutcomeUnknown {
            command_id,
            source: StoreError::Backend("connection reset".into()),
        };
        let (status, retry, body) = answer(lost.into()).await;
        assert_eq!((status.as_u16(), retry.as_deref()), (503, Some("1")));
        assert_eq!(body["error"], "outcome_unknown");
        assert_eq!(body["command_id"], command_id.to_string());

        let conflict: CommandError<Overdrawn> = StoreError::Conflict(cqrskit_core::Conflict {
            stream: cqrskit_core::StreamId::new("account", "a"),
            expected: cqrskit_core::ExpectedVersion::Exact(1),
            actual: 2,
        })
        .into();
        assert_eq!(HttpError::from(conflict).status(), StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn a_read_model_behind_is_marked_stale() {
        let (status, retry, body) = answer(HttpError::behind("not yet")).await;
        assert_eq!((status.as_u16(), retry.is_some()), (503, true));
        assert_eq!(body["stale"], true);
    }
}
