//! Shutdown with data in flight (nothing answered 2xx is lost), restarts on the same data dir,
//! and `pipewarden config validate`.

use std::process::Output;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::harness::otlp::{self, PROTOBUF};
use crate::harness::{DEADLINE, Pipewarden, StageTotals, eventually, tools};

/// A window far longer than the test: everything sent is still in the open window at shutdown,
/// so only the shutdown flush can store it.
const LONG_WINDOW: &str = "1h";

const TRACE_REQUESTS: u64 = 10;
const SPANS_PER_REQUEST: u64 = 30;
const ERRORS_PER_REQUEST: u64 = 4;
const LOG_REQUESTS: u64 = 5;
const LOGS_PER_REQUEST: u64 = 20;
const METRIC_REQUESTS: u64 = 4;
const POINTS_PER_REQUEST: u64 = 15;

fn expected_totals() -> StageTotals {
    StageTotals {
        spans: TRACE_REQUESTS * SPANS_PER_REQUEST,
        span_errors: TRACE_REQUESTS * ERRORS_PER_REQUEST,
        log_records: LOG_REQUESTS * LOGS_PER_REQUEST,
        metric_points: METRIC_REQUESTS * POINTS_PER_REQUEST,
    }
}

async fn start_with_long_window() -> Pipewarden {
    Pipewarden::start_with_env(&[("PIPEWARDEN_COLLECTOR__SIGNALS__WINDOW", LONG_WINDOW)]).await
}

/// Sends the known load over OTLP/HTTP protobuf; returns once every request was answered 2xx.
async fn send_load_over_http(pipewarden: &Pipewarden, service: &str) {
    let endpoint = pipewarden.http_endpoint();
    let client = pipewarden.client();
    for seed in 0..TRACE_REQUESTS {
        let request = otlp::trace_request(
            service,
            "load",
            seed,
            SPANS_PER_REQUEST,
            ERRORS_PER_REQUEST,
            10 + seed,
            0,
        );
        let answer = otlp::post(
            client,
            &endpoint,
            "/v1/traces",
            PROTOBUF,
            None,
            otlp::encode(&request),
        )
        .await;
        assert_eq!(answer.status, 200, "traces: {}", answer.text());
    }
    for _ in 0..LOG_REQUESTS {
        let body = otlp::encode(&otlp::logs_request(service, "load", LOGS_PER_REQUEST));
        let answer = otlp::post(
            client,
            &endpoint,
            "/v1/logs",
            PROTOBUF,
            Some("gzip"),
            otlp::gzip(&body),
        )
        .await;
        assert_eq!(answer.status, 200, "logs: {}", answer.text());
    }
    for i in 0..METRIC_REQUESTS {
        let name = format!("load_gauge_{i}");
        let body = otlp::encode(&otlp::metrics_request(
            service,
            "load",
            &name,
            POINTS_PER_REQUEST,
        ));
        let answer = otlp::post(client, &endpoint, "/v1/metrics", PROTOBUF, None, body).await;
        assert_eq!(answer.status, 200, "metrics: {}", answer.text());
    }
}

/// Sends the known load over OTLP/gRPC; returns once every call returned OK.
async fn send_load_over_grpc(pipewarden: &Pipewarden, service: &str) {
    let channel = otlp::grpc_channel(&pipewarden.grpc_endpoint()).await;
    let mut traces = TraceServiceClient::new(channel.clone());
    let mut logs = LogsServiceClient::new(channel.clone());
    let mut metrics = MetricsServiceClient::new(channel);
    for seed in 0..TRACE_REQUESTS {
        let request = otlp::trace_request(
            service,
            "load",
            seed,
            SPANS_PER_REQUEST,
            ERRORS_PER_REQUEST,
            10 + seed,
            0,
        );
        traces.export(request).await.expect("trace export");
    }
    for _ in 0..LOG_REQUESTS {
        logs.export(otlp::logs_request(service, "load", LOGS_PER_REQUEST))
            .await
            .expect("logs export");
    }
    for i in 0..METRIC_REQUESTS {
        let name = format!("load_gauge_{i}");
        metrics
            .export(otlp::metrics_request(
                service,
                "load",
                &name,
                POINTS_PER_REQUEST,
            ))
            .await
            .expect("metrics export");
    }
}

/// Waits for a clean exit (code 0), restarts on the same data dir and checks the totals.
async fn assert_clean_exit_and_exact_totals_after_restart(
    pipewarden: &mut Pipewarden,
    stage: &str,
) {
    let status = pipewarden.wait_exit(DEADLINE).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after the signal: {status}"
    );
    pipewarden.restart().await;
    pipewarden
        .wait_stage_totals(stage, expected_totals(), DEADLINE)
        .await;
    // Nothing more arrives later (no replay, no double flush).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let totals = pipewarden.stage_totals(stage).await.expect("stage totals");
    assert_eq!(
        totals,
        expected_totals(),
        "totals changed after they were complete"
    );
}

#[tokio::test]
async fn sigterm_with_http_data_in_flight_loses_nothing() {
    let mut pipewarden = start_with_long_window().await;
    send_load_over_http(&pipewarden, "shutdown-http").await;
    pipewarden.terminate();
    assert_clean_exit_and_exact_totals_after_restart(&mut pipewarden, "shutdown-http/load").await;
}

#[tokio::test]
async fn sigint_with_grpc_data_in_flight_loses_nothing() {
    let mut pipewarden = start_with_long_window().await;
    send_load_over_grpc(&pipewarden, "shutdown-grpc").await;
    pipewarden.interrupt();
    assert_clean_exit_and_exact_totals_after_restart(&mut pipewarden, "shutdown-grpc/load").await;
}

/// Two runs on one data dir add up: the store keeps the first run's windows.
#[tokio::test]
async fn totals_accumulate_across_restarts() {
    let mut pipewarden = start_with_long_window().await;
    send_load_over_http(&pipewarden, "restarts").await;
    pipewarden.terminate();
    let status = pipewarden.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "{status}");
    pipewarden.restart().await;
    send_load_over_grpc(&pipewarden, "restarts").await;
    pipewarden.terminate();
    let status = pipewarden.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "{status}");
    pipewarden.restart().await;
    let one = expected_totals();
    let two = StageTotals {
        spans: 2 * one.spans,
        span_errors: 2 * one.span_errors,
        log_records: 2 * one.log_records,
        metric_points: 2 * one.metric_points,
    };
    pipewarden
        .wait_stage_totals("restarts/load", two, DEADLINE)
        .await;
}

/// After SIGKILL (no shutdown at all) the store opens again and the app serves.
#[tokio::test]
async fn restart_after_sigkill_serves_again() {
    let mut pipewarden = start_with_long_window().await;
    send_load_over_http(&pipewarden, "killed").await;
    let status = pipewarden.kill();
    assert!(!status.success(), "{status}");
    pipewarden.restart().await;
    eventually("ready after SIGKILL and restart", DEADLINE, || async {
        match pipewarden.try_get_json("/readyz").await? {
            (200, body) if body["ready"] == true => Ok(()),
            (status, body) => Err(format!("/readyz: {status} {body}")),
        }
    })
    .await;
    let totals = pipewarden
        .stage_totals("killed/load")
        .await
        .expect("stages");
    let max = expected_totals();
    assert!(
        totals.spans <= max.spans
            && totals.span_errors <= max.span_errors
            && totals.log_records <= max.log_records
            && totals.metric_points <= max.metric_points,
        "more stored than sent: {totals:?}"
    );
}

fn validate(file: &std::path::Path) -> Output {
    Pipewarden::command()
        .args(["config", "validate"])
        .arg(file)
        .output()
        .expect("run pipewarden config validate")
}

fn combined_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn config_validate_rejects_bad_files_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "bad address",
            "[collector.otlp]\ngrpc_address = \"not an address\"\n",
            "collector.otlp.grpc_address",
        ),
        (
            "bad duration",
            "[collector.signals]\nwindow = \"ten seconds\"\n",
            "collector.signals.window",
        ),
        (
            "wrong type",
            "[collector.otlp]\nmax_body_bytes = \"big\"\n",
            "collector.otlp.max_body_bytes",
        ),
        (
            "unknown key",
            "[web]\nadress = \"127.0.0.1:9464\"\n",
            "adress",
        ),
        (
            "detector threshold out of range",
            "[detector]\nalert_threshold = 250\n",
            "detector.alert_threshold",
        ),
    ];
    for (i, (what, text, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).expect("write config");
        let output = validate(&file);
        let all = combined_output(&output);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{what}: want exit 64 (config error), got {}; output:\n{all}",
            output.status
        );
        assert!(
            all.contains(key),
            "{what}: output does not name {key:?}:\n{all}"
        );
    }
}

#[test]
fn config_validate_accepts_the_example_config() {
    let example = tools::repo_root()
        .join("deploy")
        .join("pipewarden.example.toml");
    assert!(example.is_file(), "{} is missing", example.display());
    let output = validate(&example);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        combined_output(&output)
    );
}
