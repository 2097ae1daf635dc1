//! OTLP protobuf decoding of 100-item export requests, one per signal.
//!
//! The data is built outside the timed closures; throughput is reported in items. Metrics and
//! traces go through `decode_request` as the receivers do, that is through their zero-copy scans;
//! `traces_prost` decodes the same spans with prost, for comparison. `metrics_staged` is a metrics
//! request shaped like an ingest load: 10 gauges and sums of 10 points, 2 attributes per point.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use pipewarden_collector::otlp::{Encoding, OtlpRequest, SignalKind, decode_request};
use prost::Message;

const ITEMS: u64 = 100;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", "orders"), kv("host.name", "worker-1")],
        ..Default::default()
    })
}

fn traces() -> Vec<u8> {
    let spans = (0..ITEMS)
        .map(|i| Span {
            trace_id: [(i % 251) as u8 + 1; 16].to_vec(),
            span_id: [(i % 251) as u8 + 1; 8].to_vec(),
            name: "process order".to_owned(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000,
            end_time_unix_nano: 1_700_000_000_250_000_000 + i * 1_000,
            attributes: vec![kv("pipeline.stage", "enrich"), kv("order.kind", "retail")],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn logs() -> Vec<u8> {
    let records = (0..ITEMS)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            severity_number: 9,
            severity_text: "INFO".to_owned(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "order {i} enriched with 3 line items in 12 ms"
                ))),
            }),
            attributes: vec![kv("order.id", &i.to_string())],
            trace_id: [7; 16].to_vec(),
            span_id: [9; 8].to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metrics() -> Vec<u8> {
    let points = (0..ITEMS)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("queue", &format!("q{}", i % 10))],
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    metrics_request(vec![Metric {
        name: "queue.depth".to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }])
}

/// An encoded request of `metrics` under the bench resource and one scope.
fn metrics_request(metrics: Vec<Metric>) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// An ingest-shaped request: 10 metrics (gauges and cumulative sums, alternating) of 10 points
/// each, every point with a string `pipeline.stage` and an int `partition` attribute.
fn metrics_staged() -> Vec<u8> {
    const METRICS: u64 = 10;
    let metrics = (0..METRICS)
        .map(|m| {
            let data_points = (0..ITEMS / METRICS)
                .map(|i| NumberDataPoint {
                    attributes: vec![
                        kv(
                            "pipeline.stage",
                            ["parse", "enrich", "route"][(i % 3) as usize],
                        ),
                        KeyValue {
                            key: "partition".to_owned(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(i as i64)),
                            }),
                            ..Default::default()
                        },
                    ],
                    start_time_unix_nano: 1_699_999_000_000_000_000,
                    time_unix_nano: 1_700_000_000_000_000_000 + m * 1_000 + i,
                    value: Some(if m % 2 == 0 {
                        number_data_point::Value::AsDouble(i as f64 * 0.5)
                    } else {
                        number_data_point::Value::AsInt((m * 1_000 + i) as i64)
                    }),
                    ..Default::default()
                })
                .collect();
            let data = if m % 2 == 0 {
                metric::Data::Gauge(Gauge { data_points })
            } else {
                metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            };
            Metric {
                name: format!("pipeline.records.m{m}"),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    metrics_request(metrics)
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("otlp_protobuf_decode");
    group.throughput(Throughput::Elements(ITEMS));
    for (kind, body) in [
        (SignalKind::Logs, logs()),
        (SignalKind::Traces, traces()),
        (SignalKind::Metrics, metrics()),
    ] {
        let body = Bytes::from(body);
        let id = format!("{}/items={ITEMS}", kind.as_str());
        group.bench_function(id, |b| {
            b.iter(|| decode_request(kind, Encoding::Protobuf, body.clone()))
        });
    }
    let body = Bytes::from(metrics_staged());
    // Measures the scan, not prost's fallback.
    assert!(matches!(
        decode_request(SignalKind::Metrics, Encoding::Protobuf, body.clone()),
        Ok(OtlpRequest::MetricsRaw(_))
    ));
    group.bench_function(format!("metrics_staged/items={ITEMS}"), |b| {
        b.iter(|| decode_request(SignalKind::Metrics, Encoding::Protobuf, body.clone()))
    });
    let body = Bytes::from(traces());
    group.bench_function(format!("traces_prost/items={ITEMS}"), |b| {
        b.iter(|| ExportTraceServiceRequest::decode(body.clone()))
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
