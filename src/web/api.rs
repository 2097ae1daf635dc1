//! JSON API under `/api/v1`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppError, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/stages", get(stages))
        .route("/stages/windows", get(stage_windows))
        .route("/series", get(series))
        .route("/series/points", get(points))
        .route("/logs", get(logs))
        .route("/jobs", get(jobs))
        .route("/anomalies", get(anomalies))
        .route("/kafka/groups", get(kafka_groups))
        .route("/kafka/changes", get(kafka_changes))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(t)| t)
        .map_err(|err| AppError::BadRequest(err.body_text()))
}

fn limit(requested: Option<usize>, max: usize) -> usize {
    requested.unwrap_or(max).clamp(1, max)
}

async fn stages(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let stages = state.reader.stages().await?;
    Ok(Json(json!({ "stages": stages })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowsQuery {
    stage: String,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

async fn stage_windows(
    State(state): State<AppState>,
    q: Result<Query<WindowsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let windows = state
        .reader
        .stage_windows(
            q.stage.clone(),
            q.from.unwrap_or(i64::MIN),
            q.to.unwrap_or(i64::MAX),
            limit(q.limit, state.max_rows),
        )
        .await?;
    Ok(Json(json!({ "stage": q.stage, "windows": windows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    stage: Option<String>,
    name: Option<String>,
    limit: Option<usize>,
}

async fn series(
    State(state): State<AppState>,
    q: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let series = state
        .reader
        .series(q.stage, q.name, limit(q.limit, state.max_rows))
        .await?;
    Ok(Json(json!({ "series": series })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsQuery {
    key: String,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

async fn points(
    State(state): State<AppState>,
    q: Result<Query<PointsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(AppError::BadRequest(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let points = state
        .reader
        .points(q.key.clone(), from, to, limit(q.limit, state.max_rows))
        .await?;
    Ok(Json(json!({ "key": q.key, "points": points })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    stage: Option<String>,
    limit: Option<usize>,
}

async fn logs(
    State(state): State<AppState>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let (logs, total) = state
        .reader
        .logs(q.stage, limit(q.limit, state.max_rows))
        .await?;
    Ok(Json(json!({ "logs": logs, "total": total })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsQuery {
    job: Option<String>,
    limit: Option<usize>,
}

async fn jobs(
    State(state): State<AppState>,
    q: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let runs = state
        .reader
        .job_runs(q.job, limit(q.limit, state.max_rows))
        .await?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomaliesQuery {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

async fn anomalies(
    State(state): State<AppState>,
    q: Result<Query<AnomaliesQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let anomalies = state
        .reader
        .anomalies(
            q.from.unwrap_or(i64::MIN),
            q.to.unwrap_or(i64::MAX),
            limit(q.limit, state.max_rows),
        )
        .await?;
    Ok(Json(json!({ "anomalies": anomalies })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaGroupsQuery {
    cluster: Option<String>,
}

/// Latest lag and verdict of every consumer group (partitions included). The lag history for
/// charts is the `kafka.lag_messages` / `kafka.lag_seconds` series of stage
/// `kafka/<cluster>/<group>` at `/series/points`.
async fn kafka_groups(
    State(state): State<AppState>,
    q: Result<Query<KafkaGroupsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let groups = state.reader.kafka_groups(q.cluster).await?;
    Ok(Json(json!({ "groups": groups })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaChangesQuery {
    group: Option<String>,
    limit: Option<usize>,
}

/// Verdict changes, newest first.
async fn kafka_changes(
    State(state): State<AppState>,
    q: Result<Query<KafkaChangesQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let q = query(q)?;
    let changes = state
        .reader
        .kafka_status_changes(q.group, limit(q.limit, state.max_rows))
        .await?;
    Ok(Json(json!({ "changes": changes })))
}
