//! The detectors through the whole process: OTLP logs in, log-template and schema-drift
//! anomalies out at the API; a counter that stops, an anomaly of its rate; false-positive feedback suppressing a similar anomaly, also after
//! a restart; `replay --format log` one row per line and repeatable.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Value, json};

use crate::harness::{DEADLINE, Pipewarden, eventually, otlp};

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![otlp::string_attribute("service.name", service)],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "pipewarden-tests".to_owned(),
        ..Default::default()
    })
}

/// A logs request of `bodies`, each with `pipeline.stage=ingest` and `order_id` (an int, or
/// the given string).
fn logs(bodies: &[String], order_id: Option<&str>) -> ExportLogsServiceRequest {
    let now = otlp::now_unix_nanos();
    let log_records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let order = match order_id {
                Some(text) => any_value::Value::StringValue(text.to_owned()),
                None => any_value::Value::IntValue(i as i64),
            };
            LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: 9,
                severity_text: "INFO".to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body.clone())),
                }),
                attributes: vec![
                    otlp::string_attribute("pipeline.stage", "ingest"),
                    attribute("order_id", order),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("shop"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A metrics request of one gauge `queue.depth` point per value, one second apart, the first
/// `first_second` seconds after a start 1000 s ago (points must come in time order).
fn gauge(start_ns: u64, first_second: u64, values: &[f64]) -> ExportMetricsServiceRequest {
    let data_points = values
        .iter()
        .enumerate()
        .map(|(i, value)| NumberDataPoint {
            attributes: vec![otlp::string_attribute("pipeline.stage", "ingest")],
            time_unix_nano: start_ns + (first_second + i as u64) * 1_000_000_000,
            value: Some(number_data_point::Value::AsDouble(*value)),
            ..Default::default()
        })
        .collect();
    shop_metric(Metric {
        name: "queue.depth".to_owned(),
        data: Some(metric::Data::Gauge(Gauge { data_points })),
        ..Default::default()
    })
}

/// A metrics request of service `shop` with one metric.
fn shop_metric(metric: Metric) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("shop"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A monotonic cumulative sum `rows.processed` of stage `shop/ingest`, one total every 10 s.
fn counter(start_ns: u64, totals: &[f64]) -> ExportMetricsServiceRequest {
    let data_points = totals
        .iter()
        .enumerate()
        .map(|(i, total)| NumberDataPoint {
            attributes: vec![otlp::string_attribute("pipeline.stage", "ingest")],
            start_time_unix_nano: start_ns,
            time_unix_nano: start_ns + (i as u64 + 1) * 10_000_000_000,
            value: Some(number_data_point::Value::AsDouble(*total)),
            ..Default::default()
        })
        .collect();
    let sum = Sum {
        data_points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: true,
    };
    shop_metric(Metric {
        name: "rows.processed".to_owned(),
        data: Some(metric::Data::Sum(sum)),
        ..Default::default()
    })
}

/// A monotonic delta sum `rows.exported`: one point per `(start_ns, end_ns, rows)`, the rows of
/// its own interval.
fn delta_counter(intervals: &[(u64, u64, f64)]) -> ExportMetricsServiceRequest {
    let data_points = intervals
        .iter()
        .map(|&(start_ns, end_ns, rows)| NumberDataPoint {
            attributes: vec![otlp::string_attribute("pipeline.stage", "ingest")],
            start_time_unix_nano: start_ns,
            time_unix_nano: end_ns,
            value: Some(number_data_point::Value::AsDouble(rows)),
            ..Default::default()
        })
        .collect();
    let sum = Sum {
        data_points,
        aggregation_temporality: AggregationTemporality::Delta as i32,
        is_monotonic: true,
    };
    shop_metric(Metric {
        name: "rows.exported".to_owned(),
        data: Some(metric::Data::Sum(sum)),
        ..Default::default()
    })
}

async fn post(pipewarden: &Pipewarden, path: &str, body: Vec<u8>) {
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        path,
        otlp::PROTOBUF,
        None,
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

async fn anomalies(pipewarden: &Pipewarden) -> Vec<Value> {
    let listed = pipewarden.get_json("/api/v1/anomalies?limit=1000").await;
    listed["anomalies"].as_array().cloned().unwrap_or_default()
}

async fn wait_anomaly(
    pipewarden: &Pipewarden,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, DEADLINE, || async {
        anomalies(pipewarden)
            .await
            .into_iter()
            .find(|a| matches(a))
            .ok_or_else(|| "not listed yet".to_owned())
    })
    .await
}

fn routine(i: usize) -> String {
    match i % 3 {
        0 => format!("Receiving order {i} from 10.0.0.{}:50010", i % 7),
        1 => format!("Order {i} validated in {} ms", i * 3),
        _ => format!("Payment accepted for order {i}"),
    }
}

const LOG_CONFIG: &str = r#"
[detector.logs]
warmup_records = 30

[detector.schema]
warmup_events = 30
"#;

#[tokio::test]
async fn new_log_templates_and_schema_changes_are_anomalies_at_the_api() {
    let pipewarden = Pipewarden::start_with_config(Some(LOG_CONFIG), &[]).await;
    let routine: Vec<String> = (0..60).map(routine).collect();
    post(&pipewarden, "/v1/logs", otlp::encode(&logs(&routine, None))).await;
    let novel = vec!["Disk quota exceeded on volume 7".to_owned()];
    post(&pipewarden, "/v1/logs", otlp::encode(&logs(&novel, None))).await;

    let template = wait_anomaly(&pipewarden, "a log_template anomaly", |a| {
        a["model"] == "log_template"
    })
    .await;
    assert_eq!(template["stage"], "shop/ingest", "{template}");
    assert_eq!(template["name"], "log.template", "{template}");
    assert_eq!(
        template["feature"], "Disk quota exceeded on volume <*>",
        "{template}"
    );
    assert!(template["score"].as_f64().unwrap() >= 70.0, "{template}");
    assert_eq!(template["model_version"], 1, "{template}");
    assert_eq!(template["continuing"], false, "{template}");
    assert!(
        anomalies(&pipewarden)
            .await
            .iter()
            .all(|a| a["model"] != "log_template" || a["id"] == template["id"]),
        "only the new template is new"
    );

    // `order_id` was an integer in every record; now it is a string.
    let changed = vec![routine[0].clone()];
    post(
        &pipewarden,
        "/v1/logs",
        otlp::encode(&logs(&changed, Some("A-17"))),
    )
    .await;
    let drift = wait_anomaly(&pipewarden, "a schema drift anomaly", |a| {
        a["model"] == "schema_drift"
    })
    .await;
    assert_eq!(drift["feature"], "order_id", "{drift}");
    assert_eq!(drift["name"], "log.schema.type_change", "{drift}");
    assert_eq!(
        drift["series_key"], "shop/ingest|log.schema|field=order_id",
        "{drift}"
    );
    assert_eq!(
        (drift["actual"].as_f64(), drift["typical"].as_f64()),
        (Some(3.0), Some(2.0))
    );

    let processed = pipewarden
        .metric("pipewarden_detector_log_records_total", &[])
        .await
        .unwrap();
    assert_eq!(processed, 62.0);
    let backlog = pipewarden
        .metric(
            "pipewarden_detector_skipped_total",
            &[("reason", "backlog")],
        )
        .await
        .unwrap();
    assert_eq!(backlog, 0.0);
}

fn normal_values(n: usize) -> Vec<f64> {
    (0..n).map(|i| 10.0 + (i % 5) as f64 * 0.5).collect()
}

async fn suppressed_total(pipewarden: &Pipewarden) -> f64 {
    pipewarden
        .metric("pipewarden_detector_suppressed_total", &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_false_positive_suppresses_similar_anomalies_also_after_a_restart() {
    let mut pipewarden = Pipewarden::start().await;
    let start = otlp::now_unix_nanos() - 1000 * 1_000_000_000;
    let mut values = normal_values(30);
    values.push(100.0);
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&gauge(start, 0, &values)),
    )
    .await;
    let spike = wait_anomaly(&pipewarden, "the spike's anomaly", |a| {
        a["name"] == "queue.depth"
    })
    .await;
    assert_eq!(spike["direction"], "up", "{spike}");
    let id = spike["id"].as_i64().unwrap();

    let url = pipewarden.web_url(&format!("/api/v1/anomalies/{id}/feedback"));
    let response = pipewarden
        .client()
        .post(&url)
        .json(&json!({ "label": "false_positive", "note": "batch import" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let feedback: Value = response.json().await.unwrap();
    assert_eq!(feedback["anomaly_id"], id, "{feedback}");
    assert_eq!(feedback["series_key"], spike["series_key"], "{feedback}");
    let bad = pipewarden
        .client()
        .post(&url)
        .json(&json!({ "label": "maybe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let missing = pipewarden
        .client()
        .post(pipewarden.web_url("/api/v1/anomalies/999999/feedback"))
        .json(&json!({ "label": "false_positive" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // A smaller spike of the same series, same direction (after enough normal points that
    // the model no longer expects spikes): suppressed.
    let mut values = normal_values(60);
    values.push(80.0);
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&gauge(start, 100, &values)),
    )
    .await;
    eventually("the similar anomaly suppressed", DEADLINE, || async {
        match suppressed_total(&pipewarden).await {
            1.0 => Ok(()),
            other => Err(format!("suppressed {other}")),
        }
    })
    .await;
    let listed = anomalies(&pipewarden).await;
    let spikes = listed.iter().filter(|a| a["name"] == "queue.depth").count();
    assert_eq!(
        spikes, 1,
        "the suppressed anomaly is not stored: {listed:?}"
    );

    pipewarden.interrupt();
    assert!(pipewarden.wait_exit(DEADLINE).await.success());
    pipewarden.restart().await;

    // The rules come back from the store: after a fresh warm-up, a similar spike is suppressed.
    let mut values = normal_values(30);
    values.push(90.0);
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&gauge(start, 200, &values)),
    )
    .await;
    eventually("suppression after the restart", DEADLINE, || async {
        match suppressed_total(&pipewarden).await {
            1.0 => Ok(()),
            other => Err(format!("suppressed {other}")),
        }
    })
    .await;
    let listed = pipewarden.get_json("/api/v1/feedback").await;
    let rows = listed["feedback"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["label"], "false_positive", "{listed}");
    assert_eq!(rows[0]["note"], "batch import", "{listed}");
    assert_eq!(rows[0]["suppressed"], 2, "{listed}");
    let spikes = anomalies(&pipewarden)
        .await
        .into_iter()
        .filter(|a| a["name"] == "queue.depth")
        .count();
    assert_eq!(spikes, 1);
}

#[tokio::test]
async fn a_counter_that_stops_is_an_anomaly_of_its_rate_and_its_totals_are_stored_as_sent() {
    let pipewarden = Pipewarden::start().await;
    let start = otlp::now_unix_nanos() - 2000 * 1_000_000_000;
    // 50 rows a second (500 per 10 s, give or take), then nothing in the last 10 s.
    let mut totals: Vec<f64> = (0..60)
        .map(|i| 1_000.0 + 500.0 * i as f64 + (i % 3) as f64 * 10.0)
        .collect();
    totals.push(totals[59]);
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&counter(start, &totals)),
    )
    .await;
    let stall = wait_anomaly(&pipewarden, "the stalled counter's anomaly", |a| {
        a["name"] == "rows.processed"
    })
    .await;
    assert_eq!(stall["feature"], "rate_per_s", "{stall}");
    assert_eq!(stall["actual"], 0.0, "{stall}");
    assert_eq!(stall["direction"], "down", "{stall}");
    let typical = stall["typical"].as_f64().unwrap();
    assert!((typical - 50.0).abs() < 5.0, "{stall}");
    let stall_ms = i64::try_from((start + 61 * 10_000_000_000) / 1_000_000).unwrap();
    assert_eq!(stall["timestamp_ms"], stall_ms, "{stall}");
    // Only the stall: the rising totals themselves are not news.
    let listed = anomalies(&pipewarden).await;
    let on_counter = listed.iter().filter(|a| a["name"] == "rows.processed");
    assert_eq!(on_counter.count(), 1, "{listed:?}");
    // The store keeps the totals as they were sent.
    let stored = eventually("the stored totals", DEADLINE, || async {
        let points = pipewarden
            .series_points("shop/ingest", "rows.processed")
            .await?;
        if points.len() == totals.len() {
            Ok(points)
        } else {
            Err(format!("{} of {} points", points.len(), totals.len()))
        }
    })
    .await;
    let mut values: Vec<f64> = stored.iter().map(|p| p.value).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, totals);
    // The series API says the values are a running total.
    let listed = pipewarden
        .get_json("/api/v1/series?stage=shop%2Fingest&name=rows.processed")
        .await;
    let series = listed["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{listed}");
    assert_eq!(series[0]["kind"], "running_total", "{listed}");
}

#[tokio::test]
async fn a_delta_counter_is_scored_by_its_rate_so_a_short_flush_is_no_drop_but_a_stall_is() {
    let pipewarden = Pipewarden::start().await;
    let start = otlp::now_unix_nanos() - 2000 * 1_000_000_000;
    let second = 1_000_000_000;
    // 50 rows a second (500 per 10 s, give or take), exported every 10 s; then a flush 2 s
    // later (100 rows: the same rate), then 10 s without a row.
    let mut intervals: Vec<(u64, u64, f64)> = (0..60)
        .map(|i| {
            let from = start + i * 10 * second;
            (from, from + 10 * second, 500.0 + (i % 3) as f64 * 10.0)
        })
        .collect();
    let last = start + 600 * second;
    intervals.push((last, last + 2 * second, 100.0));
    intervals.push((last + 2 * second, last + 12 * second, 0.0));
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&delta_counter(&intervals)),
    )
    .await;
    let stall = wait_anomaly(&pipewarden, "the stalled delta counter's anomaly", |a| {
        a["name"] == "rows.exported"
    })
    .await;
    assert_eq!(stall["feature"], "rate_per_s", "{stall}");
    assert_eq!(stall["actual"], 0.0, "{stall}");
    let typical = stall["typical"].as_f64().unwrap();
    assert!((typical - 50.0).abs() < 5.0, "{stall}");
    let stall_ms = i64::try_from((last + 12 * second) / 1_000_000).unwrap();
    assert_eq!(stall["timestamp_ms"], stall_ms, "{stall}");
    // The short flush is not an anomaly: only the stall is.
    let listed = anomalies(&pipewarden).await;
    let on_counter = listed.iter().filter(|a| a["name"] == "rows.exported");
    assert_eq!(on_counter.count(), 1, "{listed:?}");
    // Every point stored (the flush may share a 10 s bucket with its neighbour), the latest as
    // sent, and the series listed as increments.
    let stored = eventually("the stored increments", DEADLINE, || async {
        let points = pipewarden
            .series_points("shop/ingest", "rows.exported")
            .await?;
        let count: u64 = points.iter().map(|p| p.count).sum();
        if count == intervals.len() as u64 {
            Ok(points)
        } else {
            Err(format!("{count} of {} points", intervals.len()))
        }
    })
    .await;
    let latest = stored.iter().max_by_key(|p| p.timestamp_ms).unwrap();
    assert_eq!((latest.timestamp_ms, latest.value), (stall_ms, 0.0));
    let listed = pipewarden
        .get_json("/api/v1/series?stage=shop%2Fingest&name=rows.exported")
        .await;
    assert_eq!(listed["series"][0]["kind"], "increment", "{listed}");
}

#[test]
fn log_replay_writes_a_row_per_line_and_repeats_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.log");
    let mut text: String = (0..200).map(|i| routine(i) + "\n").collect();
    text.push('\n');
    text.push_str("Disk quota exceeded on volume 7\n");
    std::fs::write(&input, &text).unwrap();
    let config = dir.path().join("pipewarden.toml");
    std::fs::write(&config, LOG_CONFIG).unwrap();
    let run = |output: &str| {
        let output = dir.path().join(output);
        let status = Pipewarden::command()
            .arg("replay")
            .arg("--input")
            .arg(&input)
            .arg("--format")
            .arg("log")
            .arg("--output")
            .arg(&output)
            .arg("--config")
            .arg(&config)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(output).unwrap()
    };
    let (a, b) = (run("a.csv"), run("b.csv"));
    assert_eq!(a, b, "a re-run gives the same output");
    let rows: Vec<&str> = a.lines().collect();
    assert_eq!(rows[0], "line,template_id,score");
    assert_eq!(
        rows.len() - 1,
        text.lines().count(),
        "one row per input line"
    );
    assert_eq!(rows[201], "201,,0.0000");
    let last = rows[202];
    let score: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
    assert!(last.starts_with("202,3,") && score >= 70.0, "{last}");
}

/// A logs request of stage `jobs`: one record per (body, time, attributes).
fn records(entries: Vec<(String, u64, Vec<KeyValue>)>) -> ExportLogsServiceRequest {
    let log_records = entries
        .into_iter()
        .map(|(body, time, mut attributes)| {
            attributes.push(otlp::string_attribute("pipeline.stage", "jobs"));
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time,
                severity_number: 9,
                severity_text: "INFO".to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("batch"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn a_session_unlike_the_learnt_workflow_is_an_anomaly() {
    let config = r#"
[detector.logs]
session_attributes = ["job.id"]
session_timeout = "1s"
session_training = 200
"#;
    let pipewarden = Pipewarden::start_with_config(Some(config), &[]).await;
    let steps = [
        "start",
        "load the input",
        "write all the output",
        "job finished without any error",
    ];
    let start = otlp::now_unix_nanos() - 2000 * 1_000_000_000;
    let mut entries = Vec::new();
    for job in 0..200_u64 {
        for (i, step) in steps.iter().enumerate() {
            let time = start + job * 5_000_000_000 + i as u64 * 10_000_000;
            let id = otlp::string_attribute("job.id", &format!("job-{job}"));
            entries.push(((*step).to_owned(), time, vec![id]));
        }
    }
    let odd = [
        "start",
        "load the input",
        "quarantined rows of input sent aside",
        "job finished without any error",
    ];
    for (i, step) in odd.iter().enumerate() {
        let time = start + 200 * 5_000_000_000 + i as u64 * 10_000_000;
        let id = otlp::string_attribute("job.id", "job-odd");
        entries.push(((*step).to_owned(), time, vec![id]));
    }
    post(&pipewarden, "/v1/logs", otlp::encode(&records(entries))).await;
    let session = wait_anomaly(&pipewarden, "a session anomaly", |a| {
        a["model"] == "session_workflow"
    })
    .await;
    assert_eq!(session["stage"], "batch/jobs", "{session}");
    assert_eq!(session["series_key"], "batch/jobs|log.session", "{session}");
    let feature = session["feature"].as_str().unwrap();
    assert!(
        feature.contains("quarantined rows of input sent aside"),
        "{feature}"
    );
    assert!(feature.contains("session job-odd"), "{feature}");
    let sessions: Vec<Value> = anomalies(&pipewarden)
        .await
        .into_iter()
        .filter(|a| a["model"] == "session_workflow")
        .collect();
    assert_eq!(sessions.len(), 1, "only the odd job: {sessions:?}");
}

#[tokio::test]
async fn an_embedding_far_from_its_population_is_an_outlier() {
    let config = r#"
[detector.embeddings]
attribute = "embedding"
reference_points = 32
window_points = 8
"#;
    let pipewarden = Pipewarden::start_with_config(Some(config), &[]).await;
    let vector = |x: f64, y: f64| {
        let values = [x, y]
            .into_iter()
            .map(|v| AnyValue {
                value: Some(any_value::Value::DoubleValue(v)),
            })
            .collect();
        attribute(
            "embedding",
            any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values,
            }),
        )
    };
    let now = otlp::now_unix_nanos();
    let mut entries: Vec<_> = (0..64)
        .map(|i| {
            let angle = f64::from(i);
            (
                "doc indexed".to_owned(),
                now,
                vec![vector(angle.cos(), angle.sin())],
            )
        })
        .collect();
    entries.push(("doc indexed".to_owned(), now, vec![vector(8.0, 8.0)]));
    post(&pipewarden, "/v1/logs", otlp::encode(&records(entries))).await;
    let outlier = wait_anomaly(&pipewarden, "an embedding outlier", |a| {
        a["name"] == "log.embedding.outlier"
    })
    .await;
    assert_eq!(outlier["model"], "embedding_drift", "{outlier}");
    assert_eq!(
        outlier["series_key"], "batch/jobs|log.embedding",
        "{outlier}"
    );
    assert!(
        outlier["actual"].as_f64() > outlier["typical"].as_f64(),
        "{outlier}"
    );
}

#[tokio::test]
async fn a_stage_window_off_its_usual_mix_names_the_feature() {
    let config = r#"
[collector.signals]
window = "100ms"

[detector.multivariate]
min_history = 16
refit_every = 1000
"#;
    let pipewarden = Pipewarden::start_with_config(Some(config), &[]).await;
    // About 40 windows of 20 spans with 2 errors, then windows of 20 spans with 15 errors.
    for round in 0..40_u64 {
        let request = otlp::trace_request("shop", "pay", round, 20, 2, 30 + round % 5, 0);
        post(&pipewarden, "/v1/traces", otlp::encode(&request)).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let found = eventually("a multivariate anomaly", DEADLINE, || async {
        let request = otlp::trace_request("shop", "pay", 1000, 20, 15, 32, 0);
        post(&pipewarden, "/v1/traces", otlp::encode(&request)).await;
        let listed = anomalies(&pipewarden).await;
        listed
            .iter()
            .find(|a| a["model"] == "pca_residual" && a["feature"] == "span.error_ratio")
            .cloned()
            .ok_or_else(|| {
                let seen: Vec<String> = listed
                    .iter()
                    .map(|a| format!("{}:{}:{}", a["model"], a["feature"], a["score"]))
                    .collect();
                format!("not listed yet: {seen:?}")
            })
    })
    .await;
    assert_eq!(found["stage"], "shop/pay", "{found}");
    assert_eq!(
        found["series_key"], "shop/pay|stage.multivariate",
        "{found}"
    );
    assert_eq!(found["direction"], "up", "{found}");
    assert!(
        found["actual"].as_f64() > found["typical"].as_f64(),
        "{found}"
    );
}

#[tokio::test]
async fn points_closer_than_min_point_interval_are_stored_but_not_scored() {
    let config = "[detector]\nmin_point_interval = \"10s\"\n";
    let pipewarden = Pipewarden::start_with_config(Some(config), &[]).await;
    let start = otlp::now_unix_nanos() - 2000 * 1_000_000_000;
    // A gauge every second for 300 s: one point in ten is scored (seconds 0, 10, ..., 300). A
    // spike at second 295 is thinned; the same spike at second 300 is scored.
    let mut values: Vec<f64> = (0..=300).map(|i| 100.0 + (i % 7) as f64).collect();
    values[295] = 1_000.0;
    values[300] = 1_000.0;
    post(
        &pipewarden,
        "/v1/metrics",
        otlp::encode(&gauge(start, 0, &values)),
    )
    .await;
    let spike = wait_anomaly(&pipewarden, "the scored spike", |a| {
        a["name"] == "queue.depth"
    })
    .await;
    let spike_ms = i64::try_from((start + 300 * 1_000_000_000) / 1_000_000).unwrap();
    assert_eq!(spike["timestamp_ms"], spike_ms, "{spike}");
    let listed = anomalies(&pipewarden).await;
    let on_gauge = listed.iter().filter(|a| a["name"] == "queue.depth");
    assert_eq!(on_gauge.count(), 1, "only the scored spike: {listed:?}");
    // Every point is stored; 270 of the 301 were thinned, and counted.
    eventually("the stored points", DEADLINE, || async {
        let points = pipewarden
            .series_points("shop/ingest", "queue.depth")
            .await?;
        let count: u64 = points.iter().map(|p| p.count).sum();
        if count == values.len() as u64 {
            Ok(())
        } else {
            Err(format!("{count} of {} points", values.len()))
        }
    })
    .await;
    let text = pipewarden.metrics_text().await.unwrap();
    let thinned = crate::harness::prometheus::sample_sum(
        &text,
        "pipewarden_detector_points_thinned_total",
        &[],
    );
    assert_eq!(thinned, Some(270.0), "{text}");
}
