//! JSON API of the alert service, meant to be nested by the app, e.g.
//! `Router::nest("/api/v1/alerting", alert::api::router(handle))`:
//!
//! * `GET /alerts?status=firing&limit=N` -> `{"alerts":[Alert + "muted"]}`
//! * `GET /alerts/history?fingerprint=&from=MS&to=MS&limit=N` -> `{"history":[HistoryEvent]}`
//! * `GET /incidents?status=open|closed` -> `{"incidents":[Incident]}`
//! * `GET /silences` -> `{"silences":[Silence + "state"]}`
//! * `POST /silences` with a [`SilenceRequest`] body -> 201 `{"silence":{...}}`
//! * `DELETE /silences/{id}` -> 200 `{"silence":{...}}` (expired now), 404 when unknown
//! * `GET /receivers` -> `{"status":"ready|degraded|not_ready","receivers":[ReceiverHealth]}`
//!
//! Errors are `{"error": "..."}` with 400, 404 or 500.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AlertError;
use super::incident::IncidentStatus;
use super::model::AlertStatus;
use super::service::AlertHandle;
use super::silence::{Silence, SilenceRequest, SilenceState};

/// Most rows a list returns.
const MAX_ROWS: usize = 1000;

/// Builds the router; its state is the handle, so it merges into a router of any state.
pub fn router<S>(handle: AlertHandle) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/alerts", get(alerts))
        .route("/alerts/history", get(history))
        .route("/incidents", get(incidents))
        .route("/silences", get(silences).post(create_silence))
        .route("/silences/{id}", delete(expire_silence))
        .route("/receivers", get(receivers))
        .with_state(handle)
}

/// What a handler can fail with.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

impl From<AlertError> for ApiError {
    fn from(err: AlertError) -> Self {
        match err {
            AlertError::BadSilence(msg) => Self::BadRequest(msg),
            AlertError::SilenceNotFound(_) => Self::NotFound(err.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Internal(m) => {
                tracing::warn!(error = %m, "alert api request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|err| ApiError::BadRequest(err.body_text()))
}

fn limit(requested: Option<usize>) -> usize {
    requested.unwrap_or(MAX_ROWS).clamp(1, MAX_ROWS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<AlertStatus>,
    limit: Option<usize>,
}

async fn alerts(
    State(handle): State<AlertHandle>,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let alerts: Vec<Value> = handle
        .alerts()
        .into_iter()
        .filter(|a| q.status.is_none_or(|s| s == a.status))
        .take(limit(q.limit))
        .map(|a| {
            let muted = a.is_muted();
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["muted"] = json!(muted);
            v
        })
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    fingerprint: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

async fn history(
    State(handle): State<AlertHandle>,
    q: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let events = handle
        .history(q.fingerprint, q.from, q.to, limit(q.limit))
        .await?;
    Ok(Json(json!({ "history": events })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentsQuery {
    status: Option<IncidentStatus>,
}

async fn incidents(
    State(handle): State<AlertHandle>,
    q: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let incidents: Vec<_> = handle
        .incidents()
        .into_iter()
        .filter(|i| q.status.is_none_or(|s| s == i.status))
        .collect();
    Ok(Json(json!({ "incidents": incidents })))
}

fn silence_json(silence: &Silence, state: SilenceState) -> Value {
    let mut v = serde_json::to_value(silence).unwrap_or(Value::Null);
    v["state"] = json!(state);
    v
}

async fn silences(State(handle): State<AlertHandle>) -> Json<Value> {
    let silences: Vec<Value> = handle
        .silences()
        .iter()
        .map(|(s, state)| silence_json(s, *state))
        .collect();
    Json(json!({ "silences": silences }))
}

async fn create_silence(
    State(handle): State<AlertHandle>,
    body: Result<Json<SilenceRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    let silence = handle.create_silence(request).await?;
    let state = silence.state(handle.now_ms());
    Ok((
        StatusCode::CREATED,
        Json(json!({ "silence": silence_json(&silence, state) })),
    )
        .into_response())
}

async fn expire_silence(
    State(handle): State<AlertHandle>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let silence = handle.expire_silence(&id).await?;
    let state = silence.state(handle.now_ms());
    Ok(Json(json!({ "silence": silence_json(&silence, state) })))
}

async fn receivers(State(handle): State<AlertHandle>) -> Json<Value> {
    let health = handle.health();
    Json(json!({ "status": health.status(), "receivers": health.receivers }))
}
