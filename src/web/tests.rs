//! Router tests without sockets: a temp store filled through the real writer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pipewarden_collector::{SeriesPoint, SignalBatch, StageWindow, series_key};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::{AppState, router};
use crate::anomaly::Anomaly;
use crate::app::Readiness;
use crate::sink::local::{StoreBatch, StoreReader, StoreWriter, now_ms};
use crate::telemetry::AppTelemetry;

async fn state_with_data(dir: &std::path::Path) -> AppState {
    state_and_start(dir).await.0
}

/// The state and the time its data starts at (a minute ago, inside retention).
async fn state_and_start(dir: &std::path::Path) -> (AppState, i64) {
    let mut registry = Registry::default();
    let telemetry = AppTelemetry::register(&mut registry);
    let writer = StoreWriter::open(
        dir,
        crate::sink::local::StoreLimits {
            max_batches_per_transaction: 8,
            retention: Duration::from_secs(86_400),
            point_resolution: Duration::from_millis(1),
            commit_delay: Duration::ZERO,
            point_flush_interval: Duration::from_secs(1),
        },
        telemetry,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let thread = writer.spawn(rx);
    let key = series_key("svc/a", "span.count", &[]);
    let t0 = now_ms() - 60_000;
    let point = |ts, value| SeriesPoint::new("svc/a", "span.count", vec![], ts, value);
    let window = |start: i64, spans, errors| StageWindow {
        stage: "svc/a".into(),
        window_start_ms: start,
        window_end_ms: start + 1000,
        spans,
        span_errors: errors,
        latency_p50_ms: Some(5.0),
        latency_p95_ms: Some(9.0),
        latency_p99_ms: Some(10.0),
        log_records: 3,
        logs_by_severity: vec![("INFO".into(), 3)],
        ..StageWindow::default()
    };
    tx.send(StoreBatch {
        signals: SignalBatch {
            points: vec![point(t0 + 1000, 10.0), point(t0 + 2000, 12.0)],
            stage_windows: vec![window(0, 10, 1), window(1000, 30, 3)],
            ..SignalBatch::default()
        },
        scores: vec![0.0, 90.0],
        anomalies: vec![Anomaly {
            id: 0,
            timestamp_ms: t0 + 2000,
            series_key: key.clone(),
            stage: "svc/a".into(),
            name: "span.count".into(),
            model: "robust_baseline".into(),
            model_version: 1,
            score: 90.0,
            actual: 12.0,
            typical: 10.0,
            lower: 9.0,
            upper: 11.0,
            feature: "span.count".into(),
            direction: "up".into(),
            continuing: false,
        }],
        lag: Vec::new(),
        log_chunks: Vec::new(),
    })
    .await
    .unwrap();
    drop(tx);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let readiness = Arc::new(Readiness::default());
    readiness.otlp.store(true, Ordering::Relaxed);
    readiness.store_writer.store(true, Ordering::Relaxed);
    let alert_config = crate::alert::AlertConfig::default().validate().unwrap();
    let (alerts, _input) = crate::alert::AlertService::build(
        alert_config,
        dir,
        crate::alert::AlertTelemetry::register(&mut registry),
    )
    .unwrap();
    let handle = alerts.handle();
    tokio::spawn(alerts.run(tokio_util::sync::CancellationToken::new()));
    for _ in 0..200 {
        if handle.health().status() == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state = AppState {
        reader: StoreReader::open(dir).unwrap(),
        registry: Arc::new(registry),
        readiness,
        alerts: handle,
        kafka: None,
        elasticsearch: None,
        max_rows: 100,
    };
    (state, t0)
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn stages_sum_windows_and_show_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_data(dir.path()).await;
    let (status, body) = get(&state, "/api/v1/stages").await;
    assert_eq!(status, StatusCode::OK);
    let stage = &body["stages"][0];
    assert_eq!(stage["stage"], "svc/a");
    assert_eq!(stage["totals"]["spans"], 40);
    assert_eq!(stage["totals"]["span_errors"], 4);
    assert_eq!(stage["totals"]["log_records"], 6);
    assert_eq!(stage["error_ratio"], 0.1);
    assert_eq!(stage["last_window"]["window_start_ms"], 1000);
    assert_eq!(stage["last_window"]["spans"], 30);
}

#[tokio::test]
async fn series_points_and_anomalies_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (state, t0) = state_and_start(dir.path()).await;
    let (_, body) = get(&state, "/api/v1/series?stage=svc/a").await;
    assert_eq!(body["series"][0]["key"], "svc/a|span.count|");
    assert_eq!(body["series"][0]["points"], 2);
    let uri = format!(
        "/api/v1/series/points?key=svc/a%7Cspan.count%7C&from={}",
        t0 + 1500
    );
    let (_, body) = get(&state, &uri).await;
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["value"], 12.0);
    assert_eq!(points[0]["score"], 90.0);
    let (_, body) = get(&state, "/api/v1/anomalies").await;
    assert_eq!(body["anomalies"][0]["direction"], "up");
    assert_eq!(body["anomalies"][0]["actual"], 12.0);
}

#[tokio::test]
async fn bad_query_is_a_400_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_data(dir.path()).await;
    let (status, body) = get(&state, "/api/v1/series/points?key=x&from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("from"), "{body}");
    let (status, _) = get(&state, "/api/v1/series/points?from=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_data(dir.path()).await;
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"]["store"], "ready");
    assert_eq!(body["components"]["alerts"], "ready");
    let (status, body) = get(&state, "/api/v1/alerting/alerts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = get(&state, "/readyz").await;
    assert_eq!(body["components"]["probes"], "disabled");
    state.readiness.probes.set_running(true);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"]["probes"], "ready");
    state.readiness.probes.set_running(false);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["probes"], "not_ready");
    state.readiness.probes.set_running(true);
    state.readiness.otlp.store(false, Ordering::Relaxed);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["otlp"], "not_ready");
    let (status, body) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("pipewarden_store_writes_total{table=\"points\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("pipewarden_store_writes_total{table=\"anomalies\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn ui_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_data(dir.path()).await;
    let (status, body) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_str().unwrap().contains("<title>pipewarden</title>"));
}
