//! Hand-built OTLP requests, and raw OTLP/HTTP and OTLP/gRPC senders (for bad input and for
//! precise control over what is in flight).

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// gRPC method paths of the OTLP services.
pub const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// gRPC path of the metrics export.
pub const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// gRPC path of the logs export.
pub const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Content type of OTLP/HTTP protobuf bodies.
pub const PROTOBUF: &str = "application/x-protobuf";
/// Content type of OTLP/HTTP JSON bodies.
pub const JSON: &str = "application/json";

/// Returns the wall clock in Unix nanoseconds.
pub fn now_unix_nanos() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since_epoch.as_nanos()).expect("time fits u64")
}

/// Returns a string attribute.
pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![string_attribute("service.name", service)],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "pipewarden-tests".to_owned(),
        ..Default::default()
    })
}

/// Returns 16 bytes of trace id unique for (`seed`, `index`) and never all zero.
pub fn trace_id(seed: u64, index: u64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&(seed | 1 << 63).to_be_bytes());
    id.extend_from_slice(&(index + 1).to_be_bytes());
    id
}

/// Returns 8 bytes of span id unique for `index` and never all zero.
pub fn span_id(index: u64) -> Vec<u8> {
    (index + 1).to_be_bytes().to_vec()
}

/// Builds a trace request with `spans` spans of service `service`, attribute
/// `pipeline.stage=stage`, each lasting `duration_ms`; the first `errors` have status ERROR.
/// `padding` bytes of attribute value make the request as large as a test needs.
pub fn trace_request(
    service: &str,
    stage: &str,
    seed: u64,
    spans: u64,
    errors: u64,
    duration_ms: u64,
    padding: usize,
) -> ExportTraceServiceRequest {
    let end = now_unix_nanos();
    let start = end - duration_ms * 1_000_000;
    let spans = (0..spans)
        .map(|i| {
            let mut attributes = vec![string_attribute("pipeline.stage", stage)];
            if padding > 0 {
                attributes.push(string_attribute("padding", &"x".repeat(padding)));
            }
            Span {
                trace_id: trace_id(seed, i),
                span_id: span_id(i),
                name: format!("step-{}", i % 5),
                kind: 1,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: Some(Status {
                    code: if i < errors {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Ok as i32
                    },
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Builds a logs request with `records` INFO records of service `service`, stage `stage`.
pub fn logs_request(service: &str, stage: &str, records: u64) -> ExportLogsServiceRequest {
    let now = now_unix_nanos();
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: 9,
            severity_text: "INFO".to_owned(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("record {i}"))),
            }),
            attributes: vec![string_attribute("pipeline.stage", stage)],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Builds a metrics request with one gauge `name` of `points` data points (attribute `idx=i`,
/// value i) of service `service`, stage `stage`.
pub fn metrics_request(
    service: &str,
    stage: &str,
    name: &str,
    points: u64,
) -> ExportMetricsServiceRequest {
    let now = now_unix_nanos();
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            attributes: vec![
                string_attribute("pipeline.stage", stage),
                string_attribute("idx", &i.to_string()),
            ],
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: name.to_owned(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Returns the protobuf encoding of `message`.
pub fn encode(message: &impl Message) -> Vec<u8> {
    message.encode_to_vec()
}

/// Returns `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// An answer of the OTLP/HTTP receiver.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Content-Type header (empty when absent).
    pub content_type: String,
    /// Retry-After header, if any.
    pub retry_after: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// `google.rpc.Status`, the error body of OTLP/HTTP (only the fields tests read).
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
}

impl HttpAnswer {
    /// Returns the error message of the body: `google.rpc.Status.message` for protobuf and JSON
    /// bodies, the text itself otherwise.
    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        if self.content_type.starts_with(PROTOBUF)
            && let Ok(status) = RpcStatus::decode(self.body.as_slice())
        {
            return status.message;
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            for key in ["message", "error"] {
                if let Some(message) = value.get(key).and_then(|m| m.as_str()) {
                    return message.to_owned();
                }
            }
        }
        text
    }

    /// Returns the body as lossy text (for diagnostics).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POSTs `body` to `endpoint` + `path` with the given content type and content encoding.
///
/// # Panics
/// On a transport error (the receiver must answer every request).
pub async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    path: &str,
    content_type: &str,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> HttpAnswer {
    let mut request = client
        .post(format!("{endpoint}{path}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = content_encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {endpoint}{path}: {err}"));
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|err| panic!("POST {endpoint}{path}: reading body: {err}"))
        .to_vec();
    HttpAnswer {
        status,
        content_type,
        retry_after,
        body,
    }
}

/// Returns an HTTP client for the receivers (no proxy, 30 s timeout).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Connects a gRPC channel to `endpoint` (`http://HOST:PORT`).
///
/// # Panics
/// When the connection fails.
pub async fn grpc_channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_or_else(|err| panic!("gRPC connect {endpoint}: {err}"))
}

/// Sends `body` as the raw message of a unary gRPC call to `path` and returns the raw answer.
pub async fn grpc_raw_unary(
    channel: tonic::transport::Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A gRPC codec that sends and receives message bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}
