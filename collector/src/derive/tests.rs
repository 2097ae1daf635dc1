use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Sum, Summary, SummaryDataPoint, metric,
};

use super::*;
use crate::otlp::SignalKind;
use crate::otlp::test_support::*;

/// A wall-clock time aligned to 10 s windows.
const T0: i64 = 1_700_000_000_000;

fn deriver_with(config: SignalsConfig) -> (Deriver, CollectorTelemetry) {
    let telemetry = CollectorTelemetry::for_tests();
    let deriver = Deriver::new(
        DeriveSettings::new(&config),
        telemetry.clone(),
        Clock::starting_at(T0),
    );
    (deriver, telemetry)
}

fn deriver() -> (Deriver, CollectorTelemetry) {
    deriver_with(SignalsConfig::default())
}

fn feed(deriver: &mut Deriver, telemetry: &CollectorTelemetry, request: OtlpRequest) {
    deriver.process(admitted(request, telemetry));
}

fn close(deriver: &mut Deriver) -> SignalBatch {
    deriver.close_window(deriver.window_end_ms());
    std::mem::take(&mut deriver.pending)
}

fn value_of(batch: &SignalBatch, stage: &str, name: &str, attributes: &[(&str, &str)]) -> f64 {
    let attributes: Vec<(String, String)> = attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let key = series_key(stage, name, &attributes);
    let matching: Vec<&SeriesPoint> = batch
        .points
        .iter()
        .filter(|p| p.series.key == key)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one point {key} in {:#?}",
        batch.points
    );
    let point = matching[0];
    assert_eq!(
        (point.series.stage.as_str(), point.series.name.as_str()),
        (stage, name)
    );
    assert_eq!(point.series.attributes, attributes);
    point.value
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn spans_give_exact_counts_ratios_and_percentiles() {
    let (mut deriver, telemetry) = deriver();
    // Latencies 1..=100 ms; every tenth span failed.
    let spans = (0..100)
        .map(|i| span(i, 5_000, i + 1, i % 10 == 0))
        .collect();
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Traces(traces("svc", spans)),
    );
    let batch = close(&mut deriver);

    assert_eq!(value_of(&batch, "svc", "span.count", &[]), 100.0);
    assert_eq!(value_of(&batch, "svc", "span.throughput_per_s", &[]), 10.0);
    assert_eq!(value_of(&batch, "svc", "span.error_ratio", &[]), 0.1);
    assert_eq!(value_of(&batch, "svc", "span.latency_p50_ms", &[]), 50.0);
    assert_eq!(value_of(&batch, "svc", "span.latency_p95_ms", &[]), 95.0);
    assert_eq!(value_of(&batch, "svc", "span.latency_p99_ms", &[]), 99.0);
    assert!(batch.points.iter().all(|p| p.timestamp_ms == T0 + 10_000));

    let window = &batch.stage_windows[0];
    assert_eq!(window.stage, "svc");
    assert_eq!(
        (window.window_start_ms, window.window_end_ms),
        (T0, T0 + 10_000)
    );
    assert_eq!((window.spans, window.span_errors), (100, 10));
    assert_eq!(window.latency_p50_ms, Some(50.0));
    assert_eq!(window.latency_p99_ms, Some(99.0));
    assert_eq!(telemetry.inflight_bytes(), 0);
    assert_eq!(telemetry.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn nearest_rank_on_small_windows() {
    let (mut deriver, telemetry) = deriver();
    let spans = (0..10).map(|i| span(i, 5_000, 10 - i, false)).collect();
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Traces(traces("svc", spans)),
    );
    let batch = close(&mut deriver);
    assert_eq!(value_of(&batch, "svc", "span.latency_p50_ms", &[]), 5.0);
    assert_eq!(value_of(&batch, "svc", "span.latency_p95_ms", &[]), 10.0);
    assert_eq!(value_of(&batch, "svc", "span.latency_p99_ms", &[]), 10.0);
}

#[tokio::test(start_paused = true)]
async fn percentiles_beyond_the_sample_cap_come_from_a_deterministic_reservoir() {
    let config = SignalsConfig {
        max_latency_samples: 2_000,
        ..SignalsConfig::default()
    };
    let run = || {
        let (mut deriver, telemetry) = deriver_with(config.clone());
        for chunk in 0..50u64 {
            let spans = (0..1_000u64)
                .map(|i| {
                    let n = chunk * 1_000 + i;
                    span(n, 200_000, n + 1, false)
                })
                .collect();
            feed(
                &mut deriver,
                &telemetry,
                OtlpRequest::Traces(traces("svc", spans)),
            );
        }
        let samples = deriver
            .stages
            .entry("svc")
            .map(|acc| acc.latencies_ms.len());
        (close(&mut deriver), samples)
    };
    let (batch, samples) = run();
    assert_eq!(samples, Some(2_000));
    assert_eq!(value_of(&batch, "svc", "span.count", &[]), 50_000.0);
    let p50 = value_of(&batch, "svc", "span.latency_p50_ms", &[]);
    let p95 = value_of(&batch, "svc", "span.latency_p95_ms", &[]);
    assert!((p50 - 25_000.0).abs() < 2_000.0, "p50 {p50}");
    assert!((p95 - 47_500.0).abs() < 1_500.0, "p95 {p95}");
    assert_eq!(run().0, batch, "same input, same output");
}

#[tokio::test(start_paused = true)]
async fn stages_are_refined_by_item_then_resource_attributes() {
    let (mut deriver, telemetry) = deriver();
    let mut enrich = span(0, 5_000, 1, false);
    enrich.attributes = vec![
        kv("pipeline.stage", "enrich"),
        kv("job.name", "ignored-order"),
    ];
    let mut numbered = span(1, 5_000, 1, false);
    numbered.attributes = vec![int_kv("messaging.destination.name", 7)];
    let mut empty = span(2, 5_000, 1, false);
    empty.attributes = vec![kv("pipeline.stage", "")];
    let mut request = traces("svc", vec![enrich, numbered, empty]);
    // A second resource refined by a resource attribute, and one without a service name.
    let mut refined = traces("svc", vec![span(3, 5_000, 1, false)])
        .resource_spans
        .remove(0);
    refined
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("messaging.destination.name", "orders"));
    let mut anonymous = traces("x", vec![span(4, 5_000, 1, false)])
        .resource_spans
        .remove(0);
    anonymous.resource = None;
    request.resource_spans.extend([refined, anonymous]);
    feed(&mut deriver, &telemetry, OtlpRequest::Traces(request));
    let batch = close(&mut deriver);
    let stages: Vec<&str> = batch
        .stage_windows
        .iter()
        .map(|w| w.stage.as_str())
        .collect();
    assert_eq!(
        stages,
        [
            "svc",
            "svc/7",
            "svc/enrich",
            "svc/orders",
            "unknown_service"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn logs_are_counted_per_severity_and_forwarded() {
    let (mut deriver, telemetry) = deriver();
    let mut warning = log(0, "disk nearly full");
    warning.severity_text = "Warning".to_owned();
    let mut structured = log(17, "");
    structured.body = Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(
            opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: vec![int_kv("code", 42)],
            },
        )),
    });
    structured.attributes = vec![kv("order.id", "o-1"), int_kv("attempt", 3)];
    structured.trace_id = vec![0xab; 16];
    structured.span_id = vec![0x01; 8];
    let mut unspecified = log(0, "?");
    unspecified.time_unix_nano = 0;
    let records = vec![log(9, "a"), log(10, "b"), warning, structured, unspecified];
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Logs(logs("api", records)),
    );
    let batch = close(&mut deriver);

    assert_eq!(
        value_of(&batch, "api", "log.count", &[("severity", "INFO")]),
        2.0
    );
    assert_eq!(
        value_of(&batch, "api", "log.count", &[("severity", "WARN")]),
        1.0
    );
    assert_eq!(
        value_of(&batch, "api", "log.count", &[("severity", "ERROR")]),
        1.0
    );
    assert_eq!(
        value_of(&batch, "api", "log.count", &[("severity", "UNSPECIFIED")]),
        1.0
    );
    let window = &batch.stage_windows[0];
    assert_eq!(window.log_records, 5);
    let by_severity: Vec<(&str, u64)> = window
        .logs_by_severity
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    assert_eq!(
        by_severity,
        [("INFO", 2), ("WARN", 1), ("ERROR", 1), ("UNSPECIFIED", 1)]
    );

    assert_eq!(batch.logs.len(), 5);
    assert_eq!(batch.logs[0].body, "a");
    assert_eq!(batch.logs[0].severity_text, "INFO");
    assert_eq!(batch.logs[0].timestamp_ms, 1_700_000_000_000);
    assert_eq!(batch.logs[2].severity_text, "Warning");
    let structured = &batch.logs[3];
    assert_eq!(structured.body, r#"{"code":42}"#);
    assert_eq!(
        structured.attributes,
        serde_json::json!({"order.id": "o-1", "attempt": 3})
    );
    assert_eq!(structured.trace_id, "ab".repeat(16));
    assert_eq!(structured.span_id, "0101010101010101");
    assert_eq!(structured.severity_text, "ERROR");
    assert_eq!(batch.logs[4].severity_text, "UNSPECIFIED");
    // Without any time, the arrival time.
    assert_eq!(batch.logs[4].timestamp_ms, T0);
    assert_eq!(batch.logs[0].trace_id, "");
}

#[tokio::test(start_paused = true)]
async fn metric_points_are_emitted_as_they_arrive() {
    let (mut deriver, telemetry) = deriver();
    let mut sum_point = gauge_point(vec![kv("queue", "q1")], 0.0);
    sum_point.value = Some(number_data_point::Value::AsInt(17));
    sum_point.time_unix_nano = 0;
    let histogram = Metric {
        name: "latency".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("b", "2"), kv("a", "1")],
                time_unix_nano: 1_700_000_001_000_000_000,
                count: 3,
                sum: Some(7.5),
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })),
        ..Default::default()
    };
    let summary = Metric {
        name: "size".to_owned(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: 1_700_000_002_000_000_000,
                count: 4,
                sum: 10.0,
                quantile_values: vec![
                    ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    },
                    ValueAtQuantile {
                        quantile: 0.99,
                        value: 4.0,
                    },
                ],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let sum = Metric {
        name: "rows".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![sum_point],
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let mut staged = gauge_point(vec![kv("pipeline.stage", "load")], 1.5);
    staged.time_unix_nano = 1_700_000_003_000_000_000;
    let request = metrics(
        "db",
        vec![
            gauge("temperature", vec![gauge_point(vec![], 21.5), staged]),
            sum,
            histogram,
            summary,
            gauge("broken", vec![gauge_point(vec![], f64::NAN)]),
        ],
    );
    feed(&mut deriver, &telemetry, OtlpRequest::Metrics(request));
    let batch = std::mem::take(&mut deriver.pending);

    assert_eq!(value_of(&batch, "db", "temperature", &[]), 21.5);
    assert_eq!(
        value_of(
            &batch,
            "db/load",
            "temperature",
            &[("pipeline.stage", "load")]
        ),
        1.5
    );
    assert_eq!(value_of(&batch, "db", "rows", &[("queue", "q1")]), 17.0);
    assert_eq!(
        value_of(&batch, "db", "latency.count", &[("a", "1"), ("b", "2")]),
        3.0
    );
    assert_eq!(
        value_of(&batch, "db", "latency.sum", &[("a", "1"), ("b", "2")]),
        7.5
    );
    assert_eq!(value_of(&batch, "db", "size.count", &[]), 4.0);
    assert_eq!(value_of(&batch, "db", "size.sum", &[]), 10.0);
    assert_eq!(
        value_of(&batch, "db", "size.quantile", &[("quantile", "0.5")]),
        2.0
    );
    assert_eq!(
        value_of(&batch, "db", "size.quantile", &[("quantile", "0.99")]),
        4.0
    );
    assert_eq!(batch.points.len(), 9);
    let time_of = |name: &str| {
        batch
            .points
            .iter()
            .find(|p| p.series.name == name)
            .unwrap()
            .timestamp_ms
    };
    assert_eq!(time_of("temperature"), 1_700_000_000_000);
    assert_eq!(
        time_of("rows"),
        T0,
        "a point without time gets the arrival time"
    );
    assert_eq!(time_of("latency.count"), 1_700_000_001_000);
    assert_eq!(
        telemetry.dropped_count(Signal::MetricPoints, "non_finite"),
        1
    );

    let windows = close(&mut deriver).stage_windows;
    assert_eq!(windows.len(), 2);
    assert_eq!(
        (windows[0].stage.as_str(), windows[0].metric_points),
        ("db", 5)
    );
    assert_eq!(
        (windows[1].stage.as_str(), windows[1].metric_points),
        ("db/load", 1)
    );
}

#[tokio::test(start_paused = true)]
async fn job_runs_by_attribute_and_by_span_name() {
    let config = SignalsConfig {
        jobs: crate::config::JobsConfig {
            span_names: vec!["nightly-export".to_owned()],
            ..Default::default()
        },
        ..SignalsConfig::default()
    };
    let (mut deriver, telemetry) = deriver_with(config);
    let mut by_attribute = span(0, 60_000, 30_000, false);
    by_attribute.attributes = vec![kv("job.name", "compact")];
    let mut failed_again = span(1, 70_000, 10_000, true);
    failed_again.attributes = vec![kv("job.name", "compact")];
    let mut by_name = span(2, 80_000, 2_500, true);
    by_name.name = "nightly-export".to_owned();
    let plain = span(3, 80_000, 5, false);
    let request = traces("batch", vec![by_attribute, failed_again, by_name, plain]);
    feed(&mut deriver, &telemetry, OtlpRequest::Traces(request));
    let batch = close(&mut deriver);

    assert_eq!(batch.job_runs.len(), 3);
    let run = &batch.job_runs[0];
    assert_eq!(run.job, "compact");
    // `job.name` is also a stage attribute by default.
    assert_eq!(run.stage, "batch/compact");
    assert_eq!(
        (run.start_ms, run.end_ms, run.runtime_ms),
        (30_000, 60_000, 30_000.0)
    );
    assert_eq!(run.status, JobStatus::Ok);
    assert_eq!(run.trace_id.len(), 32);
    assert_eq!(run.span_id, "0000000000000001");
    assert_eq!(batch.job_runs[1].status, JobStatus::Error);
    assert_eq!(batch.job_runs[2].job, "nightly-export");
    assert_eq!(batch.job_runs[2].stage, "batch");

    let runtimes: Vec<(i64, f64)> = batch
        .points
        .iter()
        .filter(|p| p.series.name == "job.runtime_ms" && p.series.stage == "batch/compact")
        .map(|p| (p.timestamp_ms, p.value))
        .collect();
    assert_eq!(runtimes, [(60_000, 30_000.0), (70_000, 10_000.0)]);
    let ratio = value_of(
        &batch,
        "batch/compact",
        "job.success_ratio",
        &[("job", "compact")],
    );
    assert_eq!(ratio, 0.5);
    let ratio = value_of(
        &batch,
        "batch",
        "job.success_ratio",
        &[("job", "nightly-export")],
    );
    assert_eq!(ratio, 0.0);
    // Job spans are spans too.
    assert_eq!(value_of(&batch, "batch", "span.count", &[]), 2.0);
}

#[tokio::test(start_paused = true)]
async fn cardinality_cap_drops_and_counts_then_forgets_idle_series() {
    let config = SignalsConfig {
        max_series: 3,
        ..SignalsConfig::default()
    };
    let (mut deriver, telemetry) = deriver_with(config);
    let points = (0..5)
        .map(|i| gauge_point(vec![kv("id", &i.to_string())], 1.0))
        .collect();
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Metrics(metrics("svc", vec![gauge("g", points)])),
    );
    let batch = std::mem::take(&mut deriver.pending);
    assert_eq!(batch.points.len(), 3);
    assert_eq!(
        telemetry.dropped_count(Signal::MetricPoints, "cardinality"),
        2
    );
    // Known series keep flowing.
    let again = vec![gauge_point(vec![kv("id", "0")], 2.0)];
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Metrics(metrics("svc", vec![gauge("g", again)])),
    );
    assert_eq!(std::mem::take(&mut deriver.pending).points.len(), 1);
    // Series unused for SERIES_IDLE_WINDOWS windows are forgotten.
    for _ in 0..=SERIES_IDLE_WINDOWS {
        close(&mut deriver);
    }
    let new = vec![gauge_point(vec![kv("id", "9")], 1.0)];
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Metrics(metrics("svc", vec![gauge("g", new)])),
    );
    assert_eq!(std::mem::take(&mut deriver.pending).points.len(), 1);
    assert_eq!(
        telemetry.dropped_count(Signal::MetricPoints, "cardinality"),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn stage_cap_drops_and_counts() {
    let config = SignalsConfig {
        max_stages: 2,
        ..SignalsConfig::default()
    };
    let (mut deriver, telemetry) = deriver_with(config);
    for service in ["a", "b", "c"] {
        let request = traces(service, vec![span(0, 1_000, 1, false)]);
        feed(&mut deriver, &telemetry, OtlpRequest::Traces(request));
        feed(
            &mut deriver,
            &telemetry,
            OtlpRequest::Logs(logs(service, vec![log(9, "x")])),
        );
    }
    let batch = close(&mut deriver);
    assert_eq!(batch.stage_windows.len(), 2);
    assert_eq!(telemetry.dropped_count(Signal::Spans, "max_stages"), 1);
    assert_eq!(telemetry.dropped_count(Signal::LogRecords, "max_stages"), 1);
    assert_eq!(batch.logs.len(), 2);
    // The cap is per window.
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Logs(logs("c", vec![log(9, "x")])),
    );
    assert_eq!(close(&mut deriver).stage_windows[0].stage, "c");
}

#[tokio::test(start_paused = true)]
async fn whole_records_beyond_the_rate_are_counted_but_not_passed_on() {
    let config = SignalsConfig {
        max_log_records_per_second: 3,
        ..SignalsConfig::default()
    };
    let (mut deriver, telemetry) = deriver_with(config);
    let records = (0..5).map(|i| log(9, &format!("r{i}"))).collect();
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Logs(logs("api", records)),
    );
    // Half a second later the bucket holds 1.5 tokens: one more record passes.
    tokio::time::advance(Duration::from_millis(500)).await;
    let records = (5..8).map(|i| log(17, &format!("r{i}"))).collect();
    feed(
        &mut deriver,
        &telemetry,
        OtlpRequest::Logs(logs("api", records)),
    );
    let batch = close(&mut deriver);
    let bodies: Vec<&str> = batch.logs.iter().map(|l| l.body.as_str()).collect();
    assert_eq!(bodies, ["r0", "r1", "r2", "r5"]);
    assert_eq!(
        telemetry.dropped_count(Signal::LogRecords, "record_rate"),
        4
    );
    let window = &batch.stage_windows[0];
    assert_eq!(window.log_records, 8, "every record still counts");
    assert_eq!(
        value_of(&batch, "api", "log.count", &[("severity", "ERROR")]),
        3.0
    );
}

#[test]
fn severity_classes() {
    let cases = [
        (1, "", "TRACE"),
        (4, "", "TRACE"),
        (5, "", "DEBUG"),
        (12, "", "INFO"),
        (13, "", "WARN"),
        (20, "", "ERROR"),
        (24, "", "FATAL"),
        (25, "", "UNSPECIFIED"),
        (0, "", "UNSPECIFIED"),
        (0, "error", "ERROR"),
        (0, " CRITICAL", "FATAL"),
        (0, "notice", "INFO"),
        (0, "é", "UNSPECIFIED"),
        (0, "éééé", "UNSPECIFIED"),
        (0, "ÉRROR", "UNSPECIFIED"),
        (-3, "debug", "DEBUG"),
    ];
    for (number, text, expected) in cases {
        assert_eq!(
            SEVERITIES[severity_class(number, text)],
            expected,
            "{number} {text:?}"
        );
    }
}

#[test]
fn batches_are_split_to_the_size_limit() {
    let log = |i: i64| LogRecord {
        stage: "s".to_owned(),
        timestamp_ms: i,
        severity_number: 9,
        severity_text: "INFO".to_owned(),
        body: String::new(),
        attributes: serde_json::Value::Null,
        trace_id: String::new(),
        span_id: String::new(),
    };
    let batch = SignalBatch {
        logs: (0..7).map(log).collect(),
        stage_windows: vec![StageWindow::default()],
        ..SignalBatch::default()
    };
    let parts = split_batch(batch, 3);
    let sizes: Vec<usize> = parts.iter().map(|b| b.logs.len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(parts[0].stage_windows.len(), 1);
    assert_eq!(parts[2].logs[0].timestamp_ms, 6);
}

#[tokio::test(start_paused = true)]
async fn run_closes_windows_on_the_wall_clock() {
    let started = Instant::now();
    let (deriver, telemetry) = deriver();
    let (tx, rx) = mpsc::channel(8);
    let (output, mut batches) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(deriver.run(rx, output, stop.clone()));
    let request = traces("svc", vec![span(0, 1_000, 4, false)]);
    tx.send(admitted(OtlpRequest::Traces(request), &telemetry))
        .await
        .unwrap();
    // Spans alone yield nothing until the window closes at T0 + 10 s.
    let batch = batches.recv().await.unwrap();
    assert_eq!(batch.stage_windows.len(), 1);
    assert_eq!(batch.stage_windows[0].window_end_ms, T0 + 10_000);
    assert_eq!(value_of(&batch, "svc", "span.count", &[]), 1.0);
    assert!(Instant::now() >= started + Duration::from_secs(10));
    // Logs wait at most the linger (200 ms by default) for more to fill the batch.
    let sent = Instant::now();
    for body in ["x", "y"] {
        tx.send(admitted(
            OtlpRequest::Logs(logs("svc", vec![log(9, body)])),
            &telemetry,
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let batch = batches.recv().await.unwrap();
    assert_eq!(batch.logs.len(), 2, "both requests in one batch");
    assert_eq!(Instant::now() - sent, Duration::from_millis(200));
    assert!(batch.stage_windows.is_empty());
    stop.cancel();
    task.await.unwrap();
    let last = batches.recv().await.unwrap();
    assert_eq!(last.stage_windows[0].log_records, 2);
    assert!(
        batches.recv().await.is_none(),
        "output closes when the deriver returns"
    );
}

#[tokio::test(start_paused = true)]
async fn without_linger_each_request_goes_on_at_once() {
    let config = SignalsConfig {
        batch_linger: Duration::ZERO,
        ..SignalsConfig::default()
    };
    let (deriver, telemetry) = deriver_with(config);
    let (tx, rx) = mpsc::channel(8);
    let (output, mut batches) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(deriver.run(rx, output, stop.clone()));
    let sent = Instant::now();
    tx.send(admitted(
        OtlpRequest::Logs(logs("svc", vec![log(9, "x")])),
        &telemetry,
    ))
    .await
    .unwrap();
    let batch = batches.recv().await.unwrap();
    assert_eq!(batch.logs.len(), 1);
    assert_eq!(Instant::now(), sent);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_and_flushes_the_open_window() {
    let config = SignalsConfig {
        output_batch_max_points: 50,
        ..SignalsConfig::default()
    };
    let (deriver, telemetry) = deriver_with(config);
    let (tx, rx) = mpsc::channel(128);
    for i in 0..40 {
        let records = (0..10).map(|j| log(9, &format!("{i}-{j}"))).collect();
        tx.send(admitted(
            OtlpRequest::Logs(logs("svc", records)),
            &telemetry,
        ))
        .await
        .unwrap();
        let request = traces("svc", vec![span(i, 1_000, 2, false)]);
        tx.send(admitted(OtlpRequest::Traces(request), &telemetry))
            .await
            .unwrap();
    }
    assert_eq!(telemetry.queue_depth(), 80);
    // A slow consumer: the deriver's sends wait for it.
    let (output, mut batches) = mpsc::channel(1);
    let stop = CancellationToken::new();
    stop.cancel();
    let task = tokio::spawn(deriver.run(rx, output, stop));
    let mut received = Vec::new();
    while let Some(batch) = batches.recv().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
        received.push(batch);
    }
    task.await.unwrap();
    let logs: usize = received.iter().map(|b| b.logs.len()).sum();
    assert_eq!(logs, 400);
    assert!(received.iter().all(|b| b.logs.len() <= 50));
    let windows: Vec<&StageWindow> = received.iter().flat_map(|b| &b.stage_windows).collect();
    assert_eq!(windows.len(), 1);
    assert_eq!((windows[0].spans, windows[0].log_records), (40, 400));
    assert!(windows[0].window_end_ms > windows[0].window_start_ms);
    assert_eq!(telemetry.queue_depth(), 0);
    assert_eq!(telemetry.inflight_bytes(), 0);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_closed_output_counts_drops() {
    let (deriver, telemetry) = deriver();
    let (tx, rx) = mpsc::channel(8);
    tx.send(admitted(
        OtlpRequest::Logs(logs("svc", vec![log(9, "x"), log(9, "y")])),
        &telemetry,
    ))
    .await
    .unwrap();
    drop(tx);
    let (output, batches) = mpsc::channel(8);
    drop(batches);
    deriver.run(rx, output, CancellationToken::new()).await;
    assert_eq!(
        telemetry.dropped_count(Signal::LogRecords, "output_closed"),
        2
    );
}

proptest::proptest! {
    /// Whatever decodes (here: valid requests with random bytes flipped) is screened and
    /// derived without a panic.
    #[test]
    fn corrupted_requests_never_panic_the_deriver(
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        kind in 0..3u8,
    ) {
        use prost::Message;
        let (body, kind) = match kind {
            0 => {
                let mut structured = log(30, "x");
                structured.severity_text = "éééé".to_owned();
                (logs("svc", vec![log(9, "a"), structured]).encode_to_vec(), crate::otlp::SignalKind::Logs)
            }
            1 => {
                let mut point = gauge_point(vec![kv("pipeline.stage", "s"), int_kv("n", -1)], 2.0);
                point.time_unix_nano = u64::MAX;
                (metrics("svc", vec![gauge("g", vec![point])]).encode_to_vec(), crate::otlp::SignalKind::Metrics)
            }
            _ => {
                let mut job = span(3, 10, 10, true);
                job.attributes = vec![kv("job.name", "j")];
                let mut backwards = span(1, 100, 20, false);
                backwards.start_time_unix_nano = u64::MAX;
                (traces("svc", vec![backwards, job]).encode_to_vec(), crate::otlp::SignalKind::Traces)
            }
        };
        let mut body = body;
        for (at, value) in flips {
            let len = body.len();
            body[at % len] = value;
        }
        if let Ok(mut request) = crate::otlp::decode_request(kind, crate::otlp::Encoding::Protobuf, bytes::Bytes::from(body)) {
            crate::otlp::screen(&mut request);
            let (mut deriver, telemetry) = deriver();
            feed(&mut deriver, &telemetry, request);
            close(&mut deriver);
        }
    }
}

/// A metrics request with everything the scan and the deriver must agree on: resources with
/// and without a stage refinement, stage attributes on points, unsorted and non-string
/// attributes, a repeated series, a sum of integers, a non-finite value, a point without a
/// value, a metric without a name and a resource without `service.name`.
fn mixed_metrics_request()
-> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};

    let mut first = metrics(
        "orders",
        vec![
            gauge(
                "queue.depth",
                vec![
                    gauge_point(vec![kv("queue", "q1"), kv("pipeline.stage", "load")], 3.0),
                    gauge_point(
                        vec![kv("z", "last"), int_kv("partition", 7), kv("a", "first")],
                        4.0,
                    ),
                    gauge_point(vec![kv("queue", "q1"), kv("pipeline.stage", "load")], 5.0),
                    gauge_point(vec![], f64::INFINITY),
                ],
            ),
            Metric {
                name: "rows".to_owned(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![
                        NumberDataPoint {
                            attributes: vec![KeyValue {
                                key: "tags".to_owned(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                                        values: vec![AnyValue {
                                            value: Some(any_value::Value::BoolValue(true)),
                                        }],
                                    })),
                                }),
                                ..Default::default()
                            }],
                            time_unix_nano: 0,
                            value: Some(number_data_point::Value::AsInt(-12)),
                            ..Default::default()
                        },
                        NumberDataPoint {
                            time_unix_nano: 1_700_000_001_000_000_000,
                            value: None,
                            ..Default::default()
                        },
                    ],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            gauge("", vec![gauge_point(vec![], 1.0)]),
        ],
    );
    let refined = metrics("ingest", vec![gauge("lag", vec![gauge_point(vec![], 9.0)])]);
    let mut refined = refined.resource_metrics;
    if let Some(resource) = refined[0].resource.as_mut() {
        resource.attributes.push(kv("pipeline.stage", "extract"));
    }
    let mut anonymous = metrics(
        "x",
        vec![gauge("up", vec![gauge_point(vec![kv("k", "v")], 1.0)])],
    );
    anonymous.resource_metrics[0].resource = None;
    first.resource_metrics.extend(refined);
    first.resource_metrics.extend(anonymous.resource_metrics);
    first
}

/// Derives the request `decode` gives twice (the second time through a warm cache) and returns
/// every batch, then the closed window.
fn derive_twice(
    config: SignalsConfig,
    decode: impl Fn() -> OtlpRequest,
) -> (Vec<SignalBatch>, CollectorTelemetry) {
    let (mut deriver, telemetry) = deriver_with(config);
    let mut batches = Vec::new();
    for _ in 0..2 {
        let mut request = decode();
        crate::otlp::screen(&mut request);
        feed(&mut deriver, &telemetry, request);
        batches.push(std::mem::take(&mut deriver.pending));
    }
    batches.push(close(&mut deriver));
    (batches, telemetry)
}

/// Derives the metrics `body` twice, scanned or decoded by prost, and returns every batch and
/// the drop counts.
fn derive_encoded(body: &[u8], raw: bool, config: SignalsConfig) -> (Vec<SignalBatch>, [u64; 3]) {
    let (batches, telemetry) =
        derive_twice(config, || encoded_request(SignalKind::Metrics, body, raw));
    let drops = ["max_stages", "non_finite", "cardinality"]
        .map(|reason| telemetry.dropped_count(Signal::MetricPoints, reason));
    (batches, drops)
}

/// The protobuf request `body` of `kind`, scanned (`raw`; the scan must take it) or decoded
/// with prost.
fn encoded_request(kind: SignalKind, body: &[u8], raw: bool) -> OtlpRequest {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let bytes = || bytes::Bytes::copy_from_slice(body);
    let scanned = "the scan takes the request";
    match (kind, raw) {
        (SignalKind::Metrics, true) => OtlpRequest::MetricsRaw(
            crate::otlp::scan::scan_metrics(bytes())
                .unwrap()
                .expect(scanned),
        ),
        (SignalKind::Logs, true) => OtlpRequest::LogsRaw(
            crate::otlp::scan::scan_logs(bytes())
                .unwrap()
                .expect(scanned),
        ),
        (SignalKind::Traces, true) => OtlpRequest::TracesRaw(
            crate::otlp::scan::scan_traces(bytes())
                .unwrap()
                .expect(scanned),
        ),
        (SignalKind::Metrics, false) => {
            OtlpRequest::Metrics(ExportMetricsServiceRequest::decode(body).unwrap())
        }
        (SignalKind::Logs, false) => {
            OtlpRequest::Logs(ExportLogsServiceRequest::decode(body).unwrap())
        }
        (SignalKind::Traces, false) => {
            OtlpRequest::Traces(ExportTraceServiceRequest::decode(body).unwrap())
        }
    }
}

// Paused clock: a point without a time takes the deriver's clock, which must read the same in
// both derivations.
#[tokio::test(start_paused = true)]
async fn scanned_metrics_derive_exactly_like_decoded_ones() {
    use prost::Message;
    let body = mixed_metrics_request().encode_to_vec();
    let decoded = derive_encoded(&body, false, SignalsConfig::default());
    let scanned = derive_encoded(&body, true, SignalsConfig::default());
    assert_eq!(scanned, decoded);
    // The points of a scanned series share its identity, within a request and across requests:
    // a point of a known series allocates nothing of its own.
    let (first, again) = (&scanned.0[0].points, &scanned.0[1].points);
    assert_eq!(first[0].series.key, first[2].series.key);
    assert!(std::sync::Arc::ptr_eq(&first[0].series, &first[2].series));
    for (a, b) in first.iter().zip(again) {
        assert!(
            std::sync::Arc::ptr_eq(&a.series, &b.series),
            "{}",
            a.series.key
        );
    }
    // Seven points with a value per request, one of them infinite.
    assert_eq!(decoded.0[0].points.len(), 6, "{:#?}", decoded.0[0].points);
    assert_eq!(decoded.1, [0, 2, 0]);

    // Under tight caps the same points are dropped for the same reasons.
    let few_stages = SignalsConfig {
        max_stages: 2,
        ..SignalsConfig::default()
    };
    let decoded = derive_encoded(&body, false, few_stages.clone());
    assert_eq!(derive_encoded(&body, true, few_stages), decoded);
    assert!(decoded.1[0] > 0, "{:?}", decoded.1);
    let few_series = SignalsConfig {
        max_series: 2,
        ..SignalsConfig::default()
    };
    let decoded = derive_encoded(&body, false, few_series.clone());
    assert_eq!(derive_encoded(&body, true, few_series), decoded);
    assert!(decoded.1[2] > 0, "{:?}", decoded.1);
}

/// Log records of two resources (one refining the stage, one without `service.name`): stage
/// attributes on records (string, empty, integer, repeated key, the second stage attribute),
/// severity by number and by text only, a non-string body, attributes of every kind, records
/// with the observed time only or no time, and records rejected for their trace or span id.
fn mixed_logs_request() -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest
{
    let int_kv = |key: &str, value: i64| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    };
    let with = |mut record: OtlpLogRecord, attributes: Vec<KeyValue>| {
        record.attributes = attributes;
        record
    };
    let mut by_text = log(0, "by text");
    by_text.severity_text = "Warning".to_owned();
    let mut kvlist_body = log(17, "");
    kvlist_body.body = Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(
            opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: vec![kv("a", "b"), int_kv("n", 3)],
            },
        )),
    });
    kvlist_body.trace_id = vec![7; 16];
    kvlist_body.span_id = vec![8; 8];
    let mut observed_only = log(5, "observed");
    observed_only.time_unix_nano = 0;
    observed_only.observed_time_unix_nano = 1_700_000_003_000_000_000;
    let mut no_time = log(1, "no time");
    no_time.time_unix_nano = 0;
    let mut bad_trace = log(9, "bad trace id");
    bad_trace.trace_id = vec![1; 5];
    let mut bad_span = log(9, "bad span id");
    bad_span.span_id = vec![1; 3];
    let mut first = logs(
        "ingest",
        vec![
            with(log(9, "plain"), vec![kv("user", "u1"), int_kv("n", 1)]),
            with(log(13, "to load"), vec![kv("pipeline.stage", "load")]),
            with(log(13, "empty stage"), vec![kv("pipeline.stage", "")]),
            with(
                log(21, "by topic"),
                vec![kv("x", "y"), kv("messaging.destination.name", "orders")],
            ),
            with(log(9, "int stage"), vec![int_kv("pipeline.stage", 4)]),
            with(
                log(9, "repeated key"),
                vec![
                    kv("pipeline.stage", "first"),
                    kv("pipeline.stage", "second"),
                ],
            ),
            with(
                log(9, "both"),
                vec![
                    kv("messaging.destination.name", "topic"),
                    kv("pipeline.stage", "wins"),
                ],
            ),
            by_text,
            kvlist_body,
            observed_only,
            no_time,
            bad_trace,
            bad_span,
        ],
    );
    if let Some(resource) = first.resource_logs[0].resource.as_mut() {
        resource.attributes.push(kv("pipeline.stage", "extract"));
    }
    let mut anonymous = logs("x", vec![log(9, "anonymous"), log(0, "")]);
    anonymous.resource_logs[0].resource = None;
    first.resource_logs.extend(anonymous.resource_logs);
    first.resource_logs.extend(
        logs(
            "other",
            vec![with(log(9, "o"), vec![kv("pipeline.stage", "s")])],
        )
        .resource_logs,
    );
    first
}

/// Derives the logs `body` twice, scanned or decoded by prost, and returns every batch and the
/// drop counts (stage cap, record rate).
fn derive_encoded_logs(
    body: &[u8],
    raw: bool,
    config: SignalsConfig,
) -> (Vec<SignalBatch>, [u64; 2]) {
    let (batches, telemetry) =
        derive_twice(config, || encoded_request(SignalKind::Logs, body, raw));
    let drops = ["max_stages", "record_rate"]
        .map(|reason| telemetry.dropped_count(Signal::LogRecords, reason));
    (batches, drops)
}

// Paused clock: a record without a time takes the deriver's clock, which must read the same in
// both derivations.
#[tokio::test(start_paused = true)]
async fn scanned_logs_derive_exactly_like_decoded_ones() {
    use prost::Message;
    let body = mixed_logs_request().encode_to_vec();
    let decoded = derive_encoded_logs(&body, false, SignalsConfig::default());
    assert_eq!(
        derive_encoded_logs(&body, true, SignalsConfig::default()),
        decoded
    );
    // 16 records per request, two rejected for their ids.
    assert_eq!(decoded.0[0].logs.len(), 14, "{:#?}", decoded.0[0].logs);
    let stages: std::collections::BTreeSet<&str> =
        decoded.0[0].logs.iter().map(|r| r.stage.as_str()).collect();
    let expected = [
        "ingest/extract",
        "ingest/load",
        "ingest/orders",
        "ingest/4",
        "ingest/first",
        "ingest/wins",
        "unknown_service",
        "other/s",
    ];
    assert_eq!(stages, expected.into_iter().collect(), "{stages:?}");

    // Over the record rate, records are counted but not passed on, the same ones either way.
    let few_records = SignalsConfig {
        max_log_records_per_second: 5,
        ..SignalsConfig::default()
    };
    let decoded = derive_encoded_logs(&body, false, few_records.clone());
    assert_eq!(derive_encoded_logs(&body, true, few_records), decoded);
    assert_eq!(decoded.0[0].logs.len(), 5);
    assert!(decoded.1[1] > 0, "{:?}", decoded.1);
    // Under a tight stage cap the same records are dropped.
    let few_stages = SignalsConfig {
        max_stages: 2,
        ..SignalsConfig::default()
    };
    let decoded = derive_encoded_logs(&body, false, few_stages.clone());
    assert_eq!(derive_encoded_logs(&body, true, few_stages), decoded);
    assert!(decoded.1[0] > 0, "{:?}", decoded.1);
}

/// Derives the trace request `body` twice, scanned (`raw`) or decoded with prost, screened as
/// the intake screens, and returns every batch (the window closed last) and the span drop
/// counts.
fn derive_encoded_traces(
    body: &[u8],
    raw: bool,
    config: SignalsConfig,
) -> (Vec<SignalBatch>, [u64; 2]) {
    let (batches, telemetry) =
        derive_twice(config, || encoded_request(SignalKind::Traces, body, raw));
    let drops =
        ["max_stages", "cardinality"].map(|reason| telemetry.dropped_count(Signal::Spans, reason));
    (batches, drops)
}

fn nightly_export_jobs() -> SignalsConfig {
    SignalsConfig {
        jobs: crate::config::JobsConfig {
            span_names: vec!["nightly-export".to_owned()],
            ..Default::default()
        },
        ..SignalsConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn scanned_traces_derive_exactly_like_decoded_ones() {
    use prost::Message;
    let body = mixed_traces().encode_to_vec();
    let decoded = derive_encoded_traces(&body, false, nightly_export_jobs());
    assert_eq!(
        derive_encoded_traces(&body, true, nightly_export_jobs()),
        decoded
    );

    // What the comparison covers: job runs by attribute and by name, with their ids and
    // errors, and every kind of stage.
    let runs = &decoded.0[0].job_runs;
    let jobs: Vec<(&str, &str, JobStatus)> = runs
        .iter()
        .map(|r| (r.job.as_str(), r.stage.as_str(), r.status))
        .collect();
    assert_eq!(
        jobs,
        [
            ("compact", "orders/compact", JobStatus::Ok),
            ("compact", "orders/compact", JobStatus::Error),
            ("nightly-export", "orders", JobStatus::Error),
        ]
    );
    assert_eq!(runs[0].trace_id, "00000000000000030000000000000000");
    assert_eq!(runs[0].span_id, "0000000000000003");
    let window = &decoded.0[2];
    let mut stages: Vec<(&str, u64, u64)> = window
        .stage_windows
        .iter()
        .map(|w| (w.stage.as_str(), w.spans, w.span_errors))
        .collect();
    stages.sort_unstable();
    assert_eq!(
        stages,
        [
            ("ingest/extract", 2, 0),
            ("ingest/load", 2, 0),
            ("orders", 8, 6),
            ("orders/7", 2, 2),
            ("orders/compact", 4, 2),
            ("orders/enrich", 4, 0),
            ("orders/q1", 2, 0),
            ("orders/true", 2, 0),
            ("unknown_service", 2, 0),
        ]
    );
    assert_eq!(decoded.1, [0, 0]);

    // Under tight caps the same spans are dropped for the same reasons.
    let few_stages = SignalsConfig {
        max_stages: 3,
        ..nightly_export_jobs()
    };
    let decoded = derive_encoded_traces(&body, false, few_stages.clone());
    assert_eq!(derive_encoded_traces(&body, true, few_stages), decoded);
    assert!(decoded.1[0] > 0, "{:?}", decoded.1);
    let few_series = SignalsConfig {
        max_series: 2,
        ..nightly_export_jobs()
    };
    let decoded = derive_encoded_traces(&body, false, few_series.clone());
    assert_eq!(derive_encoded_traces(&body, true, few_series), decoded);
    assert!(decoded.1[1] > 0, "{:?}", decoded.1);
}

#[tokio::test(start_paused = true)]
async fn a_span_with_two_statuses_is_decoded_by_prost_and_derived_with_the_merged_status() {
    use opentelemetry_proto::tonic::trace::v1::Status;
    use prost::Message;
    let mut first = span(0, 5_000, 5, true);
    first.attributes = vec![kv("pipeline.stage", "enrich")];
    let mut body = first.encode_to_vec();
    // A second status without a code: prost merges it, keeping ERROR.
    let described = Status {
        message: "later".to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    body.push(0x7a);
    body.push(described.len() as u8);
    body.extend(described);
    let mut request = traces("svc", vec![]);
    request.resource_spans[0].scope_spans[0].spans.clear();
    let mut scope = vec![0x12, body.len() as u8];
    scope.extend(body);
    let mut resource_spans = request.resource_spans[0].encode_to_vec();
    resource_spans.extend([0x12, scope.len() as u8]);
    resource_spans.extend(scope);
    let mut encoded = vec![0x0a, resource_spans.len() as u8];
    encoded.extend(resource_spans);

    let mut request = crate::otlp::decode_request(
        crate::otlp::SignalKind::Traces,
        crate::otlp::Encoding::Protobuf,
        bytes::Bytes::from(encoded),
    )
    .unwrap();
    assert!(matches!(request, OtlpRequest::Traces(_)), "left to prost");
    crate::otlp::screen(&mut request);
    let (mut deriver, telemetry) = deriver();
    feed(&mut deriver, &telemetry, request);
    let batch = close(&mut deriver);
    assert_eq!(value_of(&batch, "svc/enrich", "span.error_ratio", &[]), 1.0);
}

/// A length-delimited protobuf field: key, length and `bytes`.
fn length_delimited(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

// Records passed on whole are read in place unless prost would merge something in them; either
// way they come out as the decoded ones do. Paused clock: see above.
#[tokio::test(start_paused = true)]
async fn scanned_records_of_every_value_kind_and_merged_fields_derive_like_decoded_ones() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use prost::Message;
    let value = |value: any_value::Value| Some(AnyValue { value: Some(value) });
    let attribute = |key: &str, v: Option<AnyValue>| KeyValue {
        key: key.to_owned(),
        value: v,
        ..Default::default()
    };
    let with = |attributes: Vec<KeyValue>| OtlpLogRecord {
        attributes,
        ..Default::default()
    };
    let record = |record: OtlpLogRecord| record.encode_to_vec();
    // Every kind of value, a value-less attribute, an empty value, a repeated key, a NaN, ids.
    let mut kinds = log(9, "kinds");
    kinds.attributes = vec![
        attribute("s", value(any_value::Value::StringValue("text".into()))),
        attribute("b", value(any_value::Value::BoolValue(true))),
        attribute("i", value(any_value::Value::IntValue(-7))),
        attribute("d", value(any_value::Value::DoubleValue(2.5))),
        attribute("nan", value(any_value::Value::DoubleValue(f64::NAN))),
        attribute("bytes", value(any_value::Value::BytesValue(vec![0xab, 1]))),
        attribute(
            "array",
            value(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }],
            })),
        ),
        attribute(
            "map",
            value(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("k", "v")],
            })),
        ),
        attribute("none", None),
        attribute("empty", Some(AnyValue { value: None })),
        kv("s", "again"),
    ];
    kinds.trace_id = vec![1; 16];
    kinds.span_id = vec![2; 8];
    kinds.observed_time_unix_nano = 1_700_000_005_000_000_000;
    // Repeated scalar fields and ids: the last one counts.
    let mut later = with(Vec::new());
    later.time_unix_nano = 1_700_000_009_000_000_000;
    later.trace_id = vec![3; 16];
    later.severity_text = "ERROR".into();
    let repeated_scalars = [record(kinds.clone()), record(later)].concat();
    // Two bodies, which prost merges: the record is left to prost.
    let mut second_body = with(vec![kv("x", "y")]);
    second_body.body = value(any_value::Value::IntValue(5));
    let two_bodies = [record(log(13, "first body")), record(second_body)].concat();
    // An attribute with two values (merged by prost) and one with two keys (the last counts).
    let two_values = [
        attribute("two", value(any_value::Value::IntValue(1))).encode_to_vec(),
        attribute("", value(any_value::Value::StringValue("second".into()))).encode_to_vec(),
    ]
    .concat();
    let two_keys = [
        attribute("old", None).encode_to_vec(),
        attribute("new", value(any_value::Value::BoolValue(false))).encode_to_vec(),
    ]
    .concat();
    let merged_value = [
        record(log(9, "merged value")),
        length_delimited(6, &two_values),
    ]
    .concat();
    let renamed = [record(log(9, "renamed")), length_delimited(6, &two_keys)].concat();
    // A body whose string value comes twice: read by prost, rendered as the string.
    let string_twice = [length_delimited(1, b"one"), length_delimited(1, b"two")].concat();
    let body_string_twice = [
        record(with(vec![kv("pipeline.stage", "load")])),
        length_delimited(5, &string_twice),
    ]
    .concat();

    let records: Vec<&[u8]> = vec![
        &repeated_scalars,
        &two_bodies,
        &merged_value,
        &renamed,
        &body_string_twice,
    ];
    let scope: Vec<u8> = records
        .iter()
        .flat_map(|record| length_delimited(2, record))
        .collect();
    let resource = resource("ingest").unwrap_or_default().encode_to_vec();
    let resource_logs = [length_delimited(1, &resource), length_delimited(2, &scope)].concat();
    let body = length_delimited(1, &resource_logs);

    // Which records are read in place.
    let scanned = crate::otlp::scan::scan_logs(bytes::Bytes::copy_from_slice(&body))
        .unwrap()
        .expect("the records are scanned");
    let in_place: Vec<bool> = scanned.records().map(|r| r.parts().is_some()).collect();
    assert_eq!(in_place, [true, false, false, true, true]);

    let decoded = derive_encoded_logs(&body, false, SignalsConfig::default());
    assert_eq!(
        derive_encoded_logs(&body, true, SignalsConfig::default()),
        decoded
    );
    let logs = &decoded.0[0].logs;
    assert_eq!(logs.len(), 5, "{logs:#?}");
    assert_eq!(logs[0].severity_text, "ERROR");
    assert_eq!(logs[0].timestamp_ms, 1_700_000_009_000);
    assert_eq!(logs[0].trace_id, "03".repeat(16));
    assert_eq!(logs[0].attributes["s"], "again");
    assert_eq!(logs[0].attributes["bytes"], "ab01");
    assert_eq!(logs[1].body, "5");
    assert_eq!(logs[2].attributes["two"], "second");
    assert_eq!(logs[3].attributes["new"], false);
    assert_eq!(
        (logs[4].body.as_str(), logs[4].stage.as_str()),
        ("two", "ingest/load")
    );
}

// The series cache starts over when full (at 1024 prefixes or 1024 series with `max_series` 1):
// here for its prefixes (1,300 metrics of one point) and then for its series only (10 metrics of
// 300 points), in the middle of a request and again in the next. Every point still resolves to
// its own series, as decoded points do. Paused clock: see above.
#[tokio::test(start_paused = true)]
async fn scanned_points_keep_their_series_when_the_cache_starts_over() {
    use prost::Message;
    // Metric `m{i}` (one point) has the value i; point p of metric `n{j}` has 10000 + 1000 j + p.
    let one_point = (0..1300)
        .map(|i| {
            gauge(
                &format!("m{i}"),
                vec![gauge_point(vec![kv("p", "0")], i as f64)],
            )
        })
        .collect();
    let many_points = (0..10)
        .map(|j| {
            let points = (0..300)
                .map(|p| {
                    let value = (10_000 + 1000 * j + p) as f64;
                    gauge_point(vec![kv("p", &p.to_string())], value)
                })
                .collect();
            gauge(&format!("n{j}"), points)
        })
        .collect();
    let mut request = crate::otlp::test_support::metrics("a", one_point);
    request
        .resource_metrics
        .extend(crate::otlp::test_support::metrics("b", many_points).resource_metrics);
    let body = request.encode_to_vec();
    let unlimited = SignalsConfig {
        max_series: 10_000,
        ..SignalsConfig::default()
    };
    for max_series in [1, 10_000] {
        let config = SignalsConfig {
            max_series,
            ..SignalsConfig::default()
        };
        let decoded = derive_encoded(&body, false, config.clone());
        assert_eq!(derive_encoded(&body, true, config), decoded);
    }
    let (batches, _) = derive_encoded(&body, true, unlimited);
    for batch in &batches[..2] {
        assert_eq!(batch.points.len(), 4_300);
        for point in &batch.points {
            let value = point.value as usize;
            let (name, p) = if value < 10_000 {
                (format!("m{value}"), 0)
            } else {
                (format!("n{}", (value - 10_000) / 1000), value % 1000)
            };
            assert_eq!(point.series.name, name);
            assert_eq!(point.series.attributes, [("p".to_owned(), p.to_string())]);
        }
    }
}

/// A sum of `temporality` (monotonic or not) with one point of value 5.
fn sum(name: &str, temporality: i32, is_monotonic: bool) -> Metric {
    use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
    Metric {
        name: name.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                start_time_unix_nano: 1_699_999_991_000_000_000,
                time_unix_nano: 1_700_000_001_000_000_000,
                value: Some(number_data_point::Value::AsDouble(5.0)),
                ..Default::default()
            }],
            aggregation_temporality: temporality,
            is_monotonic,
        })),
        ..Default::default()
    }
}

/// The kind of the series of every point and its start time (of increments only), by series
/// name.
fn kinds(batches: &[SignalBatch]) -> std::collections::BTreeMap<String, (SeriesKind, i64)> {
    batches
        .iter()
        .flat_map(|batch| &batch.points)
        .map(|point| {
            let kind = point.series.kind;
            (point.series.name.clone(), (kind, point.start_ms))
        })
        .collect()
}

// Paused clock, as in the other scanned-against-decoded tests.
#[tokio::test(start_paused = true)]
async fn monotonic_sums_are_running_totals_or_increments_whether_scanned_or_decoded() {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::{Cumulative, Delta};
    use prost::Message;
    let request = metrics(
        "orders",
        vec![
            sum("rows_total", Cumulative as i32, true),
            sum("inflight", Cumulative as i32, false),
            sum("rows_delta", Delta as i32, true),
            gauge("depth", vec![gauge_point(vec![], 1.0)]),
        ],
    );
    let body = request.encode_to_vec();
    let scanned = derive_encoded(&body, true, SignalsConfig::default());
    assert_eq!(
        scanned,
        derive_encoded(&body, false, SignalsConfig::default())
    );
    // A delta sum's points carry the start of their interval (the sums' points all have one).
    let want = [
        ("depth", (SeriesKind::Reading, 0)),
        ("inflight", (SeriesKind::Reading, 0)),
        ("rows_delta", (SeriesKind::Increment, 1_699_999_991_000)),
        ("rows_total", (SeriesKind::RunningTotal, 0)),
    ];
    let want: std::collections::BTreeMap<String, (SeriesKind, i64)> =
        want.map(|(name, kind)| (name.to_owned(), kind)).into();
    assert_eq!(kinds(&scanned.0), want);

    // The same name as a reading in one request and a running total in the next: two series
    // in the scan's cache (same key, each point keeps its own kind), as prost gives.
    let as_gauge = metrics(
        "orders",
        vec![gauge("rows_total", vec![gauge_point(vec![], 1.0)])],
    );
    let (mut deriver, telemetry) = deriver();
    let mut seen = Vec::new();
    for body in [as_gauge.encode_to_vec(), body.clone()] {
        let mut request = encoded_request(SignalKind::Metrics, &body, true);
        crate::otlp::screen(&mut request);
        feed(&mut deriver, &telemetry, request);
        let batch = std::mem::take(&mut deriver.pending);
        let point = batch.points.iter().find(|p| p.series.name == "rows_total");
        seen.push(point.map(|p| p.series.kind));
    }
    assert_eq!(
        seen,
        [Some(SeriesKind::Reading), Some(SeriesKind::RunningTotal)]
    );
}

#[tokio::test(start_paused = true)]
async fn counts_and_sums_of_histograms_and_summaries_are_running_totals_or_increments() {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::{Cumulative, Delta};
    let histogram = |name: &str, temporality: i32| Metric {
        name: name.to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: 1_699_999_991_000_000_000,
                time_unix_nano: 1_700_000_001_000_000_000,
                count: 4,
                sum: Some(10.0),
                ..Default::default()
            }],
            aggregation_temporality: temporality,
        })),
        ..Default::default()
    };
    let summary = Metric {
        name: "latency".to_owned(),
        data: Some(metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: 1_700_000_001_000_000_000,
                count: 4,
                sum: 10.0,
                quantile_values: vec![
                    opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    },
                ],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let request = metrics(
        "orders",
        vec![
            histogram("size", Cumulative as i32),
            histogram("batch", Delta as i32),
            summary,
        ],
    );
    let (mut deriver, telemetry) = deriver();
    feed(&mut deriver, &telemetry, OtlpRequest::Metrics(request));
    let got: Vec<(String, (SeriesKind, i64))> = deriver
        .pending
        .points
        .iter()
        .map(|p| (p.series.key.clone(), (p.series.kind, p.start_ms)))
        .collect();
    let running = (SeriesKind::RunningTotal, 0);
    let reading = (SeriesKind::Reading, 0);
    let increment = (SeriesKind::Increment, 1_699_999_991_000);
    let want = [
        ("orders|size.count|", running),
        ("orders|size.sum|", running),
        ("orders|batch.count|", increment),
        ("orders|batch.sum|", increment),
        ("orders|latency.count|", running),
        ("orders|latency.sum|", running),
        ("orders|latency.quantile|quantile=0.5", reading),
    ]
    .map(|(key, kind)| (key.to_owned(), kind));
    assert_eq!(got, want);
}

#[test]
fn resource_contexts_are_remembered_by_their_bytes_within_a_bound() {
    use prost::Message;
    let stage_attributes = vec!["pipeline.stage".to_owned()];
    let encoded = |service: &str| {
        let mut resource = resource(service).unwrap_or_default();
        resource.attributes.push(kv("pipeline.stage", "load"));
        resource.encode_to_vec()
    };
    let mut contexts = ResourceContexts::default();
    let (orders, billing) = (encoded("orders"), encoded("billing"));
    let found = contexts.all(&stage_attributes, 3, |i| match i {
        0 => Some(orders.as_slice()),
        1 => Some(billing.as_slice()),
        _ => None,
    });
    let named: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|c| (c.service.as_str(), c.refinement.as_deref()))
        .collect();
    assert_eq!(
        named,
        [
            ("orders", Some("load")),
            ("billing", Some("load")),
            ("unknown_service", None)
        ]
    );
    // The same bytes again: the same context, not a new decode.
    let again = contexts.context(&stage_attributes, Some(&orders));
    assert!(Arc::ptr_eq(&again, &found[0]));
    assert_eq!(contexts.by_bytes.len(), 2);
    // Many distinct resources: the map starts over rather than grow without bound.
    for i in 0..2 * RESOURCE_CONTEXTS_MAX {
        contexts.context(&stage_attributes, Some(&encoded(&format!("svc-{i}"))));
        assert!(contexts.by_bytes.len() <= RESOURCE_CONTEXTS_MAX);
    }
}
