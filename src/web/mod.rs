//! The HTTP server: JSON API, health, Prometheus `/metrics` and the web UI, all on one port.
//!
//! [`router`] builds the whole app from an [`AppState`] so tests drive it without sockets.

mod api;
mod error;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use pipewarden_collector::LagHealth;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use error::AppError;

use crate::alert::{self, AlertHandle};
use crate::app::Readiness;
use crate::sink::elasticsearch::HealthHandle;
use crate::sink::local::StoreReader;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Read side of the local store.
    pub reader: StoreReader,
    /// Every component's instruments.
    pub registry: Arc<Registry>,
    /// Component readiness.
    pub readiness: Arc<Readiness>,
    /// Alerting: state, silences, health.
    pub alerts: AlertHandle,
    /// Health of the Kafka lag source per cluster (`None` when no cluster is configured).
    pub kafka: Option<LagHealth>,
    /// Health of the Elasticsearch sink (`None` when it is off).
    pub elasticsearch: Option<HealthHandle>,
    /// Most rows a list endpoint returns.
    pub max_rows: usize,
}

/// Builds the router of the API, UI, health and metrics endpoints.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ui))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api::routes())
        .nest("/api/v1/alerting", alert::api::router(state.alerts.clone()))
        .with_state(state)
}

/// Serves `router` on `listener` until `stop` is cancelled.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn ui() -> Html<&'static str> {
    Html(include_str!("ui.html"))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let otlp = state.readiness.otlp.load(Ordering::Relaxed);
    let store = state.readiness.store_writer.load(Ordering::Relaxed) && state.reader.ping().await;
    let word = |ok: bool| if ok { "ready" } else { "not_ready" };
    // A failing alert receiver degrades alerting (notifications wait and are retried) but
    // does not make the process unready; a stopped alert loop or store does.
    let alerts = state.alerts.health().status();
    let kafka = state.kafka.as_ref().map(LagHealth::is_healthy);
    let elasticsearch = state.elasticsearch.as_ref().map(HealthHandle::is_ready);
    // A failing probe is a finding about the pipeline; only a stopped prober counts here.
    let probes = state.readiness.probes.status();
    let ready = otlp
        && store
        && alerts != "not_ready"
        && kafka.unwrap_or(true)
        && elasticsearch.unwrap_or(true)
        && state.readiness.probes.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut components = json!({
        "otlp": word(otlp), "store": word(store), "alerts": alerts, "probes": probes,
    });
    if let (Some(health), Some(ok)) = (&state.kafka, kafka) {
        components["kafka"] = json!(word(ok));
        components["kafka_clusters"] = health
            .clusters()
            .into_iter()
            .map(|(name, ok)| (name, json!(word(ok))))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some(health) = &state.elasticsearch {
        // Documents wait in the durable spool while the cluster is not ready.
        components["elasticsearch"] = json!(health.state().to_string());
    }
    let body = json!({ "ready": ready, "components": components });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|err| AppError::Internal(format!("encoding metrics: {err}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests;
