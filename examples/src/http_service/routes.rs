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
use cqrskit::http::HttpError;
use cqrskit::{CommandError, CommandOutcome, EventStore, Position, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Service;
use crate::bank_account::{AccountError, AccountEvent, Deposit, OpenAccount, Withdraw};

type Shared = State<Arc<Service>>;

/// How long `GET /balances/{id}?after=` waits by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Every route of the service.
pub(super) fn router(service: Service) -> Router {
    Router::new()
        .route("/accounts/{id}", post(open).get(account))
        .route("/accounts/{id}/deposits", post(deposit))
        .route("/accounts/{id}/withdrawals", post(withdraw))
        .route("/accounts/{id}/events", get(events))
        .route("/balances/{id}", get(balance))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(service))
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
fn account_id(id: String) -> Result<String, HttpError> {
    let valid = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(id)
    } else {
        Err(HttpError::bad_request(format!(
            "an account id is 1 to {MAX_ID_CHARS} letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A body that is not the JSON asked for is the client's mistake: 400,
/// saying what was wrong.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, HttpError> {
    Ok(body.map(|Json(value)| value)?)
}

/// The account's refusals: opening an open account contradicts its state
/// (409), an account never opened is not there (404), the rest cannot be
/// carried out as asked (422, an overdraft, a zero amount).
fn refused(error: CommandError<AccountError>) -> HttpError {
    HttpError::from_command(error, |refusal| match refusal {
        AccountError::AlreadyOpen => StatusCode::CONFLICT,
        AccountError::NotOpen => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    })
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
) -> Result<impl IntoResponse, HttpError> {
    let id = account_id(id)?;
    let Open { owner } = body(command)?;
    let outcome = service
        .accounts
        .execute(&id, OpenAccount { owner })
        .await
        .map_err(refused)?;
    Ok(executed(StatusCode::CREATED, &outcome))
}

async fn deposit(
    State(service): Shared,
    Path(id): Path<String>,
    command: Result<Json<Amount>, JsonRejection>,
) -> Result<impl IntoResponse, HttpError> {
    let id = account_id(id)?;
    let Amount { amount } = body(command)?;
    let outcome = service
        .accounts
        .execute(&id, Deposit { amount })
        .await
        .map_err(refused)?;
    Ok(executed(StatusCode::OK, &outcome))
}

async fn withdraw(
    State(service): Shared,
    Path(id): Path<String>,
    command: Result<Json<Amount>, JsonRejection>,
) -> Result<impl IntoResponse, HttpError> {
    let id = account_id(id)?;
    let Amount { amount } = body(command)?;
    let outcome = service
        .accounts
        .execute(&id, Withdraw { amount })
        .await
        .map_err(refused)?;
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
) -> Result<impl IntoResponse, HttpError> {
    let id = account_id(id)?;
    let loaded = match (as_of.at_version, as_of.at) {
        (Some(_), Some(_)) => {
            return Err(HttpError::bad_request(
                "give `at_version` or `at`, not both",
            ));
        }
        (Some(version), None) => service
            .accounts
            .load_at(&id, version)
            .await
            .map_err(|error| match error {
                cqrskit::StoreError::VersionNotFound { .. } => {
                    HttpError::not_found(error.to_string())
                }
                other => other.into(),
            })?,
        (None, Some(at)) => service.accounts.load_as_of(&id, at).await?,
        (None, None) => service.accounts.load(&id).await?,
    };
    let Some(owner) = loaded.state.owner else {
        return Err(HttpError::not_found(format!("no account {id}")));
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
) -> Result<impl IntoResponse, HttpError> {
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
        return Err(HttpError::not_found(format!("no account {id}")));
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
) -> Result<impl IntoResponse, HttpError> {
    let id = account_id(id)?;
    if let Some(position) = after.after.as_deref() {
        let position: Position =
            position
                .parse()
                .map_err(|error: cqrskit::ParsePositionError| {
                    HttpError::bad_request(error.to_string())
                })?;
        let wait = after
            .wait_ms
            .map_or(DEFAULT_WAIT, Duration::from_millis)
            .min(MAX_WAIT);
        let caught_up = service
            .host
            .wait_for("account_balances", position, wait)
            .await?;
        if !caught_up {
            return Err(HttpError::behind(format!(
                "the balances have not reached {position} within {} ms; ask again",
                wait.as_millis()
            )));
        }
    }
    let row = service
        .balances
        .get(service.store.pool(), &id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no balance for account {id}")))?;
    Ok(Json(json!({
        "id": row.account_id,
        "owner": row.owner,
        "balance": row.balance,
        "version": row.version,
    })))
}

/// 200 when the database answers and every hosted service runs and is
/// healthy (the projection's lag and lease, the server), 503 when not.
async fn health(State(service): Shared) -> impl IntoResponse {
    let database = cqrskit::postgres::sqlx::query("SELECT 1")
        .execute(service.store.pool())
        .await;
    let health = service.host.health().await;
    let status = if database.is_ok() && health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "database": if database.is_ok() { "up" } else { "down" },
        "healthy": health.healthy,
        "services": health.services,
    });
    (status, Json(body))
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
