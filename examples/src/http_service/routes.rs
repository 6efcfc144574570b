//! The routes and their handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use cqrskit::chrono::{DateTime, Utc};
use cqrskit::{CommandOutcome, EventStore, Position, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Service};
use crate::bank_account::{AccountEvent, Deposit, OpenAccount, Withdraw};

type Shared = State<Arc<Service>>;

/// How long `GET /balances/{id}?after=` waits by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Every route of the service.
pub(super) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/accounts/{id}", post(open).get(account))
        .route("/accounts/{id}/deposits", post(deposit))
        .route("/accounts/{id}/withdrawals", post(withdraw))
        .route("/accounts/{id}/events", get(events))
        .route("/balances/{id}", get(balance))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(service)
}

#[derive(Deserialize)]
struct Open {
    owner: String,
}

#[derive(Deserialize)]
struct Amount {
    amount: u64,
}

/// The longest account id the service takes.
const MAX_ID_CHARS: usize = 64;

/// An account id from a path: 1 to 64 letters, digits, `-`, `_` or `.`;
/// anything else (a control character, a 10 kB id) is the client's
/// mistake, 400, before it reaches the store.
fn account_id(id: String) -> Result<String, ApiError> {
    let valid = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(id)
    } else {
        Err(ApiError::BadInput(format!(
            "an account id is 1 to {MAX_ID_CHARS} letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A body that is not the JSON asked for is the client's mistake: 400,
/// saying what was wrong.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| ApiError::BadInput(rejection.body_text()))
}

/// A command's answer: the stream's version and where its last event sits
/// in the log (what `GET /balances/{id}?after=` waits for).
fn executed(
    status: StatusCode,
    outcome: &CommandOutcome<AccountEvent>,
) -> (StatusCode, Json<Value>) {
    let position = outcome
        .events
        .last()
        .map(|event| event.position.to_string());
    (
        status,
        Json(json!({ "version": outcome.version, "position": position })),
    )
}

async fn open(
    State(service): Shared,
    Path(id): Path<String>,
    command: Result<Json<Open>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    let Open { owner } = body(command)?;
    let outcome = service.accounts.execute(&id, OpenAccount { owner }).await?;
    Ok(executed(StatusCode::CREATED, &outcome))
}

async fn deposit(
    State(service): Shared,
    Path(id): Path<String>,
    command: Result<Json<Amount>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    let Amount { amount } = body(command)?;
    let outcome = service.accounts.execute(&id, Deposit { amount }).await?;
    Ok(executed(StatusCode::OK, &outcome))
}

async fn withdraw(
    State(service): Shared,
    Path(id): Path<String>,
    command: Result<Json<Amount>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    let Amount { amount } = body(command)?;
    let outcome = service.accounts.execute(&id, Withdraw { amount }).await?;
    Ok(executed(StatusCode::OK, &outcome))
}

#[derive(Deserialize)]
struct AsOf {
    at_version: Option<u64>,
    at: Option<DateTime<Utc>>,
}

/// The aggregate's state, now or as of a version or a time.
async fn account(
    State(service): Shared,
    Path(id): Path<String>,
    Query(as_of): Query<AsOf>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    let loaded = match (as_of.at_version, as_of.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadInput(
                "give `at_version` or `at`, not both".to_owned(),
            ));
        }
        (Some(version), None) => service
            .accounts
            .load_at(&id, version)
            .await
            .map_err(|error| match error {
                cqrskit::StoreError::VersionNotFound { .. } => {
                    ApiError::NotFound(error.to_string())
                }
                other => other.into(),
            })?,
        (None, Some(at)) => service.accounts.load_as_of(&id, at).await?,
        (None, None) => service.accounts.load(&id).await?,
    };
    let Some(owner) = loaded.state.owner else {
        return Err(ApiError::NotFound(format!("no account {id}")));
    };
    Ok(Json(json!({
        "id": id,
        "owner": owner,
        "balance": loaded.state.balance,
        "version": loaded.version,
    })))
}

/// The account's events, oldest first.
async fn events(
    State(service): Shared,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    let stream = StreamId::new("account", &id);
    let mut history = Vec::new();
    loop {
        let batch = service
            .store
            .read_stream(&stream, history.len() as u64 + 1, 500)
            .await?;
        let full = batch.len() == 500;
        history.extend(batch.iter().map(|event| {
            json!({
                "version": event.version,
                "type": event.event_type,
                "recorded_at": event.recorded_at,
                "position": event.position.to_string(),
                "payload": serde_json::from_str::<Value>(event.payload.get()).unwrap_or(Value::Null),
            })
        }));
        if !full {
            break;
        }
    }
    if history.is_empty() {
        return Err(ApiError::NotFound(format!("no account {id}")));
    }
    Ok(Json(Value::Array(history)))
}

#[derive(Deserialize)]
struct After {
    after: Option<String>,
    wait_ms: Option<u64>,
}

/// The read model's row, once it has applied the event at `after`.
async fn balance(
    State(service): Shared,
    Path(id): Path<String>,
    Query(after): Query<After>,
) -> Result<impl IntoResponse, ApiError> {
    let id = account_id(id)?;
    if let Some(position) = after.after.as_deref() {
        let position: Position = position
            .parse()
            .map_err(|error: cqrskit::ParsePositionError| ApiError::BadInput(error.to_string()))?;
        let wait = after
            .wait_ms
            .map_or(DEFAULT_WAIT, Duration::from_millis)
            .min(MAX_WAIT);
        if !service.runner.wait_for(position, wait).await? {
            return Err(ApiError::Behind(format!(
                "the balances have not reached {position} within {} ms; ask again",
                wait.as_millis()
            )));
        }
    }
    let row = service
        .balances
        .get(service.store.pool(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no balance for account {id}")))?;
    Ok(Json(json!({
        "id": row.account_id,
        "owner": row.owner,
        "balance": row.balance,
        "version": row.version,
    })))
}

/// 200 when the database answers, with the projection's lag; 503 when not.
async fn health(State(service): Shared) -> impl IntoResponse {
    let database = cqrskit::postgres::sqlx::query("SELECT 1")
        .execute(service.store.pool())
        .await;
    let lag = service.runner.lag().await;
    match (database, lag) {
        (Ok(_), Ok(lag)) => (
            StatusCode::OK,
            Json(json!({
                "database": "up",
                "projections": {
                    "account_balances": {
                        "lag_events": lag.events,
                        "behind_seconds": lag.behind.as_secs_f64(),
                    }
                }
            })),
        ),
        (Err(error), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "database": "down", "message": error.to_string() })),
        ),
        (Ok(_), Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "database": "up", "message": error.to_string() })),
        ),
    }
}

/// Prometheus' text format, when a recorder was installed.
async fn metrics(State(service): Shared) -> impl IntoResponse {
    match &service.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::NOT_FOUND,
            "no metrics recorder is installed".to_owned(),
        ),
    }
}
