//! Real OpenTelemetry SDK clients (Python, `tests/fixtures/otel_emit.py`) over OTLP/gRPC and
//! OTLP/HTTP-protobuf, with and without gzip: exact totals, derived window figures, accepted
//! counters, stored log records.

use std::collections::BTreeMap;

use crate::harness::{
    Compression, DEADLINE, EmitSpec, Pipewarden, Protocol, PythonOtel, eventually, query_escape,
};

/// Window length the tests configure, and its value in seconds.
const WINDOW: &str = "1s";
const WINDOW_SECS: f64 = 1.0;

async fn start_pipewarden() -> Pipewarden {
    Pipewarden::start_with_env(&[("PIPEWARDEN_COLLECTOR__SIGNALS__WINDOW", WINDOW)]).await
}

fn spec(protocol: Protocol, compression: Compression, service: &str) -> EmitSpec {
    let mut spec = EmitSpec::new(protocol, compression, service, "transform");
    spec.spans = 200;
    spec.error_spans = 17;
    spec.metric_points = 12;
    spec.log_records = 10;
    spec
}

fn endpoint(pipewarden: &Pipewarden, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => pipewarden.grpc_endpoint(),
        Protocol::HttpProtobuf => pipewarden.http_endpoint(),
    }
}

/// Sends `spec` with the Python SDK and checks everything pipewarden reports about it.
async fn emit_and_check_everything(spec: EmitSpec) {
    let pipewarden = start_pipewarden().await;
    let report = PythonOtel::new()
        .emit(&spec, &endpoint(&pipewarden, spec.protocol))
        .await;
    let stage = spec.stage_name();
    assert_eq!(report.stage, stage);
    assert_eq!(
        (
            report.spans,
            report.span_errors,
            report.metric_points,
            report.log_records
        ),
        (
            spec.spans,
            spec.error_spans,
            spec.metric_points,
            spec.log_records
        ),
        "the fixture sent something else than asked"
    );
    assert_eq!(
        report.span_durations_ms,
        (1..=spec.spans).collect::<Vec<_>>(),
        "the fixture's durations are not 1..=N ms"
    );

    check_accepted_counters(&pipewarden, &spec).await;
    let entry = pipewarden
        .wait_stage_totals(&stage, spec.expected_totals(), DEADLINE)
        .await;
    check_last_window_shape(&entry, &stage);
    check_span_window_figures(&pipewarden, &spec).await;
    check_stored_logs(&pipewarden, &spec).await;
    check_log_count_series(&pipewarden, &spec).await;
    check_metric_series(&pipewarden, &spec).await;
}

/// `pipewarden_collector_accepted_total{signal}` counts exactly what was sent.
async fn check_accepted_counters(pipewarden: &Pipewarden, spec: &EmitSpec) {
    for (signal, sent) in [
        ("spans", spec.spans),
        ("metric_points", spec.metric_points),
        ("log_records", spec.log_records),
    ] {
        let what = format!("accepted_total{{signal={signal}}} == {sent}");
        eventually(&what, DEADLINE, || async {
            let accepted = pipewarden.accepted(signal).await?;
            if accepted == sent as f64 {
                Ok(())
            } else {
                Err(format!(
                    "accepted_total{{signal=\"{signal}\"}} is {accepted}"
                ))
            }
        })
        .await;
    }
}

/// `last_window` carries the StageWindow fields of an aligned window of the configured length.
fn check_last_window_shape(entry: &serde_json::Value, stage: &str) {
    let window = &entry["last_window"];
    assert!(
        window.is_object(),
        "stage entry without last_window: {entry}"
    );
    assert_eq!(
        window["stage"], stage,
        "last_window of another stage: {entry}"
    );
    let start = window["window_start_ms"].as_i64().expect("window_start_ms");
    let end = window["window_end_ms"].as_i64().expect("window_end_ms");
    assert_eq!(end - start, 1000, "window is not {WINDOW}: {window}");
    assert_eq!(
        start % 1000,
        0,
        "window not aligned to wall-clock seconds: {window}"
    );
    for field in [
        "spans",
        "span_errors",
        "metric_points",
        "log_records",
        "logs_by_severity",
    ] {
        assert!(
            window.get(field).is_some(),
            "last_window lacks {field}: {window}"
        );
    }
}

/// Every span was sent in one request and ends at the same instant, so exactly one window holds
/// them all: its span.count, error ratio, throughput and nearest-rank latency percentiles are
/// known.
async fn check_span_window_figures(pipewarden: &Pipewarden, spec: &EmitSpec) {
    let stage = spec.stage_name();
    let n = spec.spans as f64;
    let counts = eventually("span.count points", DEADLINE, || async {
        let points = pipewarden.series_points(&stage, "span.count").await?;
        if points.iter().any(|p| p.value == n) {
            Ok(points)
        } else {
            Err(format!("no window with span.count == {n} yet: {points:?}"))
        }
    })
    .await;
    let total: f64 = counts.iter().map(|p| p.value).sum();
    assert_eq!(
        total, n,
        "span.count points do not add up to the spans sent: {counts:?}"
    );
    let timestamp = counts
        .iter()
        .find(|p| p.value == n)
        .expect("found above")
        .timestamp_ms;

    let value_at = |name: &'static str| {
        let stage = stage.clone();
        async move {
            let points = pipewarden
                .series_points(&stage, name)
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            points
                .iter()
                .find(|p| p.timestamp_ms == timestamp)
                .map(|p| p.value)
                .unwrap_or_else(|| panic!("no {name} point at {timestamp}: {points:?}"))
        }
    };

    let error_ratio = value_at("span.error_ratio").await;
    let want_ratio = spec.error_spans as f64 / n;
    assert!(
        (error_ratio - want_ratio).abs() < 1e-9,
        "span.error_ratio {error_ratio}, want {want_ratio}"
    );
    let throughput = value_at("span.throughput_per_s").await;
    let want_throughput = n / WINDOW_SECS;
    assert!(
        (throughput - want_throughput).abs() < 1e-6,
        "span.throughput_per_s {throughput}, want {want_throughput}"
    );
    for (name, q) in [
        ("span.latency_p50_ms", 0.50),
        ("span.latency_p95_ms", 0.95),
        ("span.latency_p99_ms", 0.99),
    ] {
        let got = value_at(name).await;
        let want = spec.expected_latency_ms(q);
        // Nearest rank over 1..=N ms; allow 1 ms for another rank convention or interpolation.
        assert!(
            (got - want).abs() <= 1.0,
            "{name} is {got} ms, want {want} ms (nearest rank over 1..={} ms)",
            spec.spans
        );
    }
}

/// `GET /api/v1/logs?stage=` returns every record with its severity and body.
async fn check_stored_logs(pipewarden: &Pipewarden, spec: &EmitSpec) {
    let stage = spec.stage_name();
    let path = format!("/api/v1/logs?stage={}&limit=1000", query_escape(&stage));
    let body = eventually("stored log records", DEADLINE, || async {
        let (status, body) = pipewarden.try_get_json(&path).await?;
        if status == 200 && body["total"] == spec.log_records {
            Ok(body)
        } else {
            Err(format!("GET {path}: {status} {body}"))
        }
    })
    .await;
    let logs = body["logs"].as_array().expect("logs array");
    assert_eq!(logs.len() as u64, spec.log_records, "{body}");
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let mut bodies: Vec<String> = Vec::new();
    for record in logs {
        assert_eq!(record["stage"], stage.as_str(), "{record}");
        let severity = record["severity_text"].as_str().expect("severity_text");
        *by_severity.entry(severity.to_owned()).or_default() += 1;
        bodies.push(record["body"].as_str().expect("string body").to_owned());
    }
    let want: BTreeMap<String, u64> = spec.expected_logs_by_severity().into_iter().collect();
    assert_eq!(by_severity, want, "severities of the stored records");
    bodies.sort();
    let mut want_bodies: Vec<String> = (0..spec.log_records)
        .map(|j| format!("log record {j} of {stage}"))
        .collect();
    want_bodies.sort();
    assert_eq!(bodies, want_bodies, "bodies of the stored records");
}

/// `log.count` series (one per severity) add up to the records sent per severity.
async fn check_log_count_series(pipewarden: &Pipewarden, spec: &EmitSpec) {
    let stage = spec.stage_name();
    let want: BTreeMap<String, u64> = spec.expected_logs_by_severity().into_iter().collect();
    eventually("log.count series per severity", DEADLINE, || async {
        let points = pipewarden.series_points(&stage, "log.count").await?;
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for point in &points {
            let severity = point.attributes["severity"]
                .as_str()
                .ok_or_else(|| format!("log.count point without severity attribute: {point:?}"))?;
            *got.entry(severity.to_owned()).or_default() += point.value as u64;
        }
        if got == want {
            Ok(())
        } else {
            Err(format!("log.count per severity {got:?}, want {want:?}"))
        }
    })
    .await;
}

/// Every metric data point became series points with the value sent: counter and gauge points
/// under the metric name, histogram points as `<name>.count` and `<name>.sum`.
async fn check_metric_series(pipewarden: &Pipewarden, spec: &EmitSpec) {
    let stage = spec.stage_name();
    // (series name, idx) -> value
    let mut want: BTreeMap<(String, u64), f64> = BTreeMap::new();
    for i in 0..spec.metric_points {
        match i % 3 {
            0 => {
                want.insert(("pw_test_counter".into(), i), (i + 1) as f64);
            }
            1 => {
                want.insert(("pw_test_gauge".into(), i), i as f64 * 1.5);
            }
            _ => {
                want.insert(("pw_test_histogram.count".into(), i), 1.0);
                want.insert(("pw_test_histogram.sum".into(), i), i as f64);
            }
        }
    }
    let names = [
        "pw_test_counter",
        "pw_test_gauge",
        "pw_test_histogram.count",
        "pw_test_histogram.sum",
    ];
    eventually("metric series with the values sent", DEADLINE, || async {
        let mut got: BTreeMap<(String, u64), f64> = BTreeMap::new();
        for name in names {
            for point in pipewarden.series_points(&stage, name).await? {
                let idx = point.attributes["idx"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("{name} point without idx attribute: {point:?}"))?;
                if got.insert((name.to_owned(), idx), point.value).is_some() {
                    return Err(format!("{name} idx={idx} stored twice"));
                }
            }
        }
        if got == want {
            Ok(())
        } else {
            Err(format!("metric series {got:?}, want {want:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn python_sdk_over_grpc() {
    emit_and_check_everything(spec(Protocol::Grpc, Compression::None, "py-grpc")).await;
}

#[tokio::test]
async fn python_sdk_over_grpc_with_gzip() {
    emit_and_check_everything(spec(Protocol::Grpc, Compression::Gzip, "py-grpc-gzip")).await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf() {
    emit_and_check_everything(spec(Protocol::HttpProtobuf, Compression::None, "py-http")).await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf_with_gzip() {
    let spec = spec(Protocol::HttpProtobuf, Compression::Gzip, "py-http-gzip");
    emit_and_check_everything(spec).await;
}

/// Many small requests (possibly spread over several windows): totals and counters stay exact.
#[tokio::test]
async fn python_sdk_many_small_requests_add_up() {
    let pipewarden = start_pipewarden().await;
    let mut spec = spec(Protocol::HttpProtobuf, Compression::Gzip, "py-batches");
    spec.spans = 500;
    spec.error_spans = 42;
    spec.metric_points = 30;
    spec.log_records = 120;
    spec.batch_size = 25;
    PythonOtel::new()
        .emit(&spec, &pipewarden.http_endpoint())
        .await;
    check_accepted_counters(&pipewarden, &spec).await;
    pipewarden
        .wait_stage_totals(&spec.stage_name(), spec.expected_totals(), DEADLINE)
        .await;
}
