//! Pre-encoded OTLP export requests (protobuf), built once before any timed phase.
//!
//! Every request carries exactly [`ITEMS_PER_REQUEST`] items of one signal (log records, spans or
//! metric data points) from one resource, as an SDK's batch exporter sends them. The content looks
//! like a data pipeline's telemetry: eight services, stage attributes, a mix of severities, a few
//! error spans and job runs, and about a thousand distinct metric series, so the server does its
//! real per-item work (stage derivation, series keys) rather than a best case.

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

/// Items (log records, spans or metric data points) in every request.
pub const ITEMS_PER_REQUEST: u64 = 100;

const SERVICES: usize = 8;
const STAGES: usize = 4;
const PARTITIONS: usize = 16;
const METRIC_NAMES: [(&str, bool); 10] = [
    ("records.processed", true),
    ("records.failed", true),
    ("bytes.read", true),
    ("bytes.written", true),
    ("queue.depth", false),
    ("consumer.lag", false),
    ("batch.duration_ms", false),
    ("batch.size", false),
    ("worker.busy_ratio", false),
    ("buffer.fill_ratio", false),
];

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    Logs,
    Spans,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Spans, Signal::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Spans => "spans",
            Signal::Metrics => "metrics",
        }
    }

    /// Unit of the items counted for this signal.
    pub fn unit(self) -> &'static str {
        match self {
            Signal::Logs => "log records/s",
            Signal::Spans => "spans/s",
            Signal::Metrics => "metric points/s",
        }
    }

    /// OTLP/HTTP path.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Spans => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// OTLP/gRPC method path.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Spans => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

/// Encoded requests of one signal: protobuf bodies for OTLP/HTTP and the same messages in gRPC
/// length-prefixed frames.
pub struct Encoded {
    pub http: Vec<Bytes>,
    pub grpc: Vec<Bytes>,
    pub mean_body_bytes: usize,
}

/// Encoded requests of every signal.
pub struct Payloads {
    pub logs: Encoded,
    pub spans: Encoded,
    pub metrics: Encoded,
}

impl Payloads {
    /// Builds `pool` distinct requests per signal, timestamped around `now_ns` (each request a
    /// little later than the one before it).
    pub fn build(pool: usize, now_ns: u64) -> Payloads {
        let mut rng = SplitMix(0x5eed_0fb3_4c4d);
        let logs = (0..pool).map(|i| logs_request(&mut rng, i, now_ns).encode_to_vec());
        let logs = encode_all(logs);
        let spans = (0..pool).map(|i| spans_request(&mut rng, i, now_ns).encode_to_vec());
        let spans = encode_all(spans);
        let mut totals = CounterTotals::new();
        let metrics =
            (0..pool).map(|i| metrics_request(&mut rng, &mut totals, i, now_ns).encode_to_vec());
        let metrics = encode_all(metrics);
        Payloads {
            logs,
            spans,
            metrics,
        }
    }

    pub fn get(&self, signal: Signal) -> &Encoded {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Spans => &self.spans,
            Signal::Metrics => &self.metrics,
        }
    }
}

fn encode_all(messages: impl Iterator<Item = Vec<u8>>) -> Encoded {
    let http: Vec<Bytes> = messages.map(Bytes::from).collect();
    let grpc = http.iter().map(|body| grpc_frame(body)).collect();
    let total: usize = http.iter().map(Bytes::len).sum();
    let mean_body_bytes = total / http.len().max(1);
    Encoded {
        http,
        grpc,
        mean_body_bytes,
    }
}

/// Wraps a protobuf message in a gRPC frame: uncompressed flag + big-endian length + message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(message.len() + 5);
    frame.put_u8(0);
    // A request is a few tens of KiB: far below u32::MAX.
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(message);
    frame.freeze()
}

/// Small deterministic generator (SplitMix64): the payloads are the same in every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn id<const N: usize>(&mut self) -> Vec<u8> {
        let mut id = Vec::with_capacity(N);
        while id.len() < N {
            id.extend_from_slice(&self.next().to_le_bytes());
        }
        id.truncate(N);
        id
    }
}

fn string_kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
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

fn resource(service: usize) -> Resource {
    Resource {
        attributes: vec![
            string_kv("service.name", format!("bench-svc-{service}")),
            string_kv("service.version", "1.4.2"),
            string_kv("host.name", format!("worker-{}", service % 3)),
            string_kv("deployment.environment", "bench"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "pipeline-bench".to_owned(),
        version: "0.1.0".to_owned(),
        ..Default::default()
    }
}

/// Start of request `index`: requests are 10 ms apart, ending near `now_ns`.
fn request_time_ns(index: usize, now_ns: u64) -> u64 {
    now_ns.saturating_sub(60_000_000_000) + index as u64 * 10_000_000
}

fn logs_request(rng: &mut SplitMix, index: usize, now_ns: u64) -> ExportLogsServiceRequest {
    let service = index % SERVICES;
    let base = request_time_ns(index, now_ns);
    let records = (0..ITEMS_PER_REQUEST)
        .map(|i| {
            let roll = rng.below(100);
            let (severity_number, severity_text) = match roll {
                0..=2 => (5, "DEBUG"),
                3..=82 => (9, "INFO"),
                83..=94 => (13, "WARN"),
                _ => (17, "ERROR"),
            };
            let stage = rng.below(STAGES);
            let batch = rng.next() % 100_000;
            let millis = 1 + rng.below(250);
            let time = base + i * 100_000;
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time + 250_000,
                severity_number,
                severity_text: severity_text.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!(
                        "processed batch {batch} of topic orders-{stage} in {millis} ms \
                         ({severity_text})"
                    ))),
                }),
                attributes: vec![
                    string_kv("pipeline.stage", format!("stage-{stage}")),
                    int_kv("batch.size", 1 + rng.below(500) as i64),
                    string_kv("code.function", "process_batch"),
                ],
                trace_id: if rng.below(4) == 0 {
                    rng.id::<16>()
                } else {
                    Vec::new()
                },
                span_id: if rng.below(4) == 0 {
                    rng.id::<8>()
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn spans_request(rng: &mut SplitMix, index: usize, now_ns: u64) -> ExportTraceServiceRequest {
    let service = index % SERVICES;
    let base = request_time_ns(index, now_ns);
    let trace_id = rng.id::<16>();
    let root_id = rng.id::<8>();
    let spans = (0..ITEMS_PER_REQUEST)
        .map(|i| {
            let stage = rng.below(STAGES);
            // Log-uniform latency between 0.5 ms and 500 ms.
            let latency_ns = (500_000.0 * 1000f64.powf(rng.unit())) as u64;
            let start = base + i * 50_000;
            let is_error = rng.below(50) == 0;
            let is_job = rng.below(100) == 0;
            let mut attributes = vec![
                string_kv("pipeline.stage", format!("stage-{stage}")),
                string_kv("messaging.system", "kafka"),
                string_kv("messaging.destination.name", format!("orders-{stage}")),
                int_kv("messaging.batch.message_count", 1 + rng.below(500) as i64),
            ];
            if is_job {
                attributes.push(string_kv("job.name", format!("compaction-{}", stage % 2)));
            }
            Span {
                trace_id: if i % 10 == 0 {
                    rng.id::<16>()
                } else {
                    trace_id.clone()
                },
                span_id: if i == 0 {
                    root_id.clone()
                } else {
                    rng.id::<8>()
                },
                parent_span_id: if i == 0 { Vec::new() } else { root_id.clone() },
                name: if is_job { "run job" } else { "process batch" }.to_owned(),
                kind: if i == 0 {
                    span::SpanKind::Server
                } else {
                    span::SpanKind::Internal
                } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + latency_ns,
                attributes,
                status: Some(Status {
                    message: if is_error {
                        "downstream timeout".to_owned()
                    } else {
                        String::new()
                    },
                    code: if is_error {
                        status::StatusCode::Error
                    } else {
                        status::StatusCode::Unset
                    } as i32,
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The running total of each counter series (service, metric, partition) and the request it
/// was last sent in.
type CounterTotals = std::collections::HashMap<(usize, usize, usize), (usize, f64)>;

fn metrics_request(
    rng: &mut SplitMix,
    totals: &mut CounterTotals,
    index: usize,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    let service = index % SERVICES;
    let time = request_time_ns(index, now_ns);
    let points_per_metric = ITEMS_PER_REQUEST as usize / METRIC_NAMES.len();
    let first_partition = rng.below(PARTITIONS);
    let metrics = METRIC_NAMES
        .iter()
        .enumerate()
        .map(|(metric, &(name, is_counter))| {
            let points: Vec<NumberDataPoint> = (0..points_per_metric)
                .map(|p| {
                    let partition = (first_partition + p) % PARTITIONS;
                    let value = if is_counter {
                        // A counter grows with the time since its last point (about 3,700 a
                        // second, give or take half), so its rate is as noisy as a real one's.
                        let key = (service, metric, partition);
                        let (last, total) = totals
                            .get(&key)
                            .copied()
                            .unwrap_or((index, partition as f64 * 1000.0));
                        let grown = 37.0 * (index - last) as f64 * (0.5 + rng.unit());
                        let total = (total + grown).floor();
                        totals.insert(key, (index, total));
                        total
                    } else {
                        50.0 + 10.0 * rng.unit() + partition as f64
                    };
                    NumberDataPoint {
                        attributes: vec![
                            string_kv("pipeline.stage", format!("stage-{}", partition % STAGES)),
                            int_kv("partition", partition as i64),
                        ],
                        start_time_unix_nano: now_ns.saturating_sub(3_600_000_000_000),
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    }
                })
                .collect();
            let data = if is_counter {
                metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            } else {
                metric::Data::Gauge(Gauge {
                    data_points: points,
                })
            };
            Metric {
                name: name.to_owned(),
                unit: "1".to_owned(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Checks that the first request of each signal decodes and carries [`ITEMS_PER_REQUEST`] items.
pub fn check_item_counts(payloads: &Payloads) -> anyhow::Result<()> {
    let count_logs = |body: &Bytes| -> anyhow::Result<usize> {
        let req = ExportLogsServiceRequest::decode(body.clone())?;
        Ok(req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum())
    };
    let count_spans = |body: &Bytes| -> anyhow::Result<usize> {
        let req = ExportTraceServiceRequest::decode(body.clone())?;
        Ok(req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum())
    };
    let count_points = |body: &Bytes| -> anyhow::Result<usize> {
        let req = ExportMetricsServiceRequest::decode(body.clone())?;
        Ok(req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                _ => 0,
            })
            .sum())
    };
    let first = |encoded: &Encoded| encoded.http.first().cloned().unwrap_or_default();
    let counts = [
        (Signal::Logs, count_logs(&first(&payloads.logs))?),
        (Signal::Spans, count_spans(&first(&payloads.spans))?),
        (Signal::Metrics, count_points(&first(&payloads.metrics))?),
    ];
    for (signal, count) in counts {
        anyhow::ensure!(
            count as u64 == ITEMS_PER_REQUEST,
            "{} request carries {count} items, not {ITEMS_PER_REQUEST}",
            signal.name()
        );
    }
    Ok(())
}
