//! OTLP receivers: gRPC ([`grpc`]) and HTTP ([`http`]) in front of one shared intake.
//!
//! Both receivers turn an export request into an [`OtlpRequest`] and hand it to the intake,
//! which applies the same rules to both:
//!
//! 1. *Screening*: items the deriver cannot use are rejected and reported back in the OTLP
//!    `partial_success` (spans without a valid 16-byte trace id or 8-byte span id, log records
//!    with ids of the wrong length, number data points without a value, metrics without a name).
//!    The rest of the request is accepted.
//! 2. *Budget*: the request reserves its size in bytes from the in-flight budget
//!    (`otlp.max_inflight_bytes`), waiting at most `otlp.backpressure_wait`. The reservation
//!    travels with the request and is given back only once the deriver has processed it.
//! 3. *Queue*: the request goes into the bounded queue of the deriver, again waiting at most
//!    what is left of `otlp.backpressure_wait`.
//!
//! A request that finds no budget or no queue space is refused as a whole with HTTP 503 and
//! `Retry-After` (gRPC `UNAVAILABLE` with `google.rpc.RetryInfo`), so the exporter retries and
//! nothing is lost. We answer 503 rather than 429 because the cause is our capacity, not the
//! client's rate; OTLP exporters retry both. Everything answered with success is derived, and
//! every item dropped afterwards is counted in `pipewarden_collector_dropped_total`.

pub mod decode;
pub(crate) mod grpc;
pub(crate) mod http;
pub mod scan;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

pub use self::decode::{DecodeError, decode_request};
pub use self::scan::{RawLogs, RawMetrics, RawTraces};
use crate::telemetry::{CollectorTelemetry, Signal};

/// The three OTLP export services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// `TraceService/Export`, `POST /v1/traces`.
    Traces,
    /// `MetricsService/Export`, `POST /v1/metrics`.
    Metrics,
    /// `LogsService/Export`, `POST /v1/logs`.
    Logs,
}

impl SignalKind {
    /// Returns the lowercase name (`traces`, `metrics`, `logs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    pub(crate) fn signal(self) -> Signal {
        match self {
            Self::Traces => Signal::Spans,
            Self::Metrics => Signal::MetricPoints,
            Self::Logs => Signal::LogRecords,
        }
    }
}

/// Wire encoding of an OTLP/HTTP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Binary protobuf, `application/x-protobuf`.
    Protobuf,
    /// OTLP/JSON, `application/json`.
    Json,
}

impl Encoding {
    /// Returns the media type of the encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// A decoded OTLP export request of any of the three kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum OtlpRequest {
    /// Spans.
    Traces(ExportTraceServiceRequest),
    /// Metric data points.
    Metrics(ExportMetricsServiceRequest),
    /// Log records.
    Logs(ExportLogsServiceRequest),
    /// Metric data points of a protobuf request, scanned in place (see [`scan`]).
    MetricsRaw(RawMetrics),
    /// Log records of a protobuf request, scanned in place (see [`scan::scan_logs`]).
    LogsRaw(RawLogs),
    /// Spans of a protobuf request, scanned in place (see [`scan::scan_traces`]).
    TracesRaw(RawTraces),
}

impl OtlpRequest {
    /// Returns which service the request belongs to.
    pub fn kind(&self) -> SignalKind {
        match self {
            Self::Traces(_) | Self::TracesRaw(_) => SignalKind::Traces,
            Self::Metrics(_) | Self::MetricsRaw(_) => SignalKind::Metrics,
            Self::Logs(_) | Self::LogsRaw(_) => SignalKind::Logs,
        }
    }

    /// Returns the number of items: spans, metric data points or log records.
    ///
    /// For the scanned requests ([`OtlpRequest::MetricsRaw`], [`OtlpRequest::LogsRaw`],
    /// [`OtlpRequest::TracesRaw`]), the items screening keeps (their rejected items stay in the
    /// body and the deriver skips them).
    pub fn item_count(&self) -> u64 {
        let count: usize = match self {
            Self::TracesRaw(raw) => {
                return raw
                    .span_count()
                    .saturating_sub(raw.invalid_trace_ids() + raw.invalid_span_ids());
            }
            Self::MetricsRaw(raw) => {
                return raw
                    .point_count()
                    .saturating_sub(raw.empty_name_points() + raw.missing_value_points());
            }
            Self::LogsRaw(raw) => {
                return raw
                    .record_count()
                    .saturating_sub(raw.invalid_trace_id() + raw.invalid_span_id());
            }
            Self::Traces(request) => request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Self::Metrics(request) => request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(metric_point_count)
                .sum(),
            Self::Logs(request) => request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
        };
        count as u64
    }
}

/// Returns the number of data points of a metric, whatever its type.
pub(crate) fn metric_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Why an item was rejected in a `partial_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    InvalidTraceId,
    InvalidSpanId,
    MissingValue,
    EmptyMetricName,
}

impl Rejection {
    const ALL: [Rejection; 4] = [
        Self::InvalidTraceId,
        Self::InvalidSpanId,
        Self::MissingValue,
        Self::EmptyMetricName,
    ];

    fn reason(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "invalid_trace_id",
            Self::InvalidSpanId => "invalid_span_id",
            Self::MissingValue => "missing_value",
            Self::EmptyMetricName => "empty_metric_name",
        }
    }

    fn describe(self, signal: Signal) -> &'static str {
        match (self, signal) {
            (Self::InvalidTraceId, Signal::Spans) => {
                "trace_id must be 16 bytes and not all zero (32 hex digits in JSON)"
            }
            (Self::InvalidSpanId, Signal::Spans) => {
                "span_id must be 8 bytes and not all zero (16 hex digits in JSON)"
            }
            (Self::InvalidTraceId, _) => "trace_id must be empty or 16 bytes",
            (Self::InvalidSpanId, _) => "span_id must be empty or 8 bytes",
            (Self::MissingValue, _) => "number data point has neither as_double nor as_int",
            (Self::EmptyMetricName, _) => "metric name is empty",
        }
    }
}

/// Counts of rejected items per [`Rejection`], indexed like [`Rejection::ALL`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Rejections([u64; 4]);

impl Rejections {
    fn add(&mut self, rejection: Rejection, items: u64) {
        self.0[rejection as usize] += items;
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn iter(&self) -> impl Iterator<Item = (Rejection, u64)> + '_ {
        Rejection::ALL
            .into_iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
    }

    fn message(&self, signal: Signal) -> String {
        let mut message = String::new();
        for (i, (rejection, n)) in self.iter().enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            // Writing into a String cannot fail.
            let _ = write!(
                message,
                "{n} {} rejected: {}",
                signal.as_str(),
                rejection.describe(signal)
            );
        }
        message
    }
}

fn is_valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// Rejects the unusable items of a request in place and returns what was rejected.
///
/// One pass counts; a second pass removes, and runs only when something was rejected.
pub(crate) fn screen(request: &mut OtlpRequest) -> Rejections {
    let mut rejections = Rejections::default();
    match request {
        OtlpRequest::MetricsRaw(raw) => {
            // The deriver skips these points: nothing to remove.
            rejections.add(Rejection::EmptyMetricName, raw.empty_name_points());
            rejections.add(Rejection::MissingValue, raw.missing_value_points());
        }
        OtlpRequest::LogsRaw(raw) => {
            // The deriver skips these records: nothing to remove.
            rejections.add(Rejection::InvalidTraceId, raw.invalid_trace_id());
            rejections.add(Rejection::InvalidSpanId, raw.invalid_span_id());
        }
        OtlpRequest::TracesRaw(raw) => {
            // The scan judged the ids; the deriver and the probe tap skip these spans.
            rejections.add(Rejection::InvalidTraceId, raw.invalid_trace_ids());
            rejections.add(Rejection::InvalidSpanId, raw.invalid_span_ids());
        }
        OtlpRequest::Traces(request) => {
            let spans = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans);
            for span in spans {
                if let Some(rejection) = span_rejection(&span.trace_id, &span.span_id) {
                    rejections.add(rejection, 1);
                }
            }
            if rejections.total() > 0 {
                for scope in request
                    .resource_spans
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_spans)
                {
                    scope
                        .spans
                        .retain(|span| span_rejection(&span.trace_id, &span.span_id).is_none());
                }
            }
        }
        OtlpRequest::Logs(request) => {
            let records = request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records);
            for record in records {
                if let Some(rejection) = log_rejection(&record.trace_id, &record.span_id) {
                    rejections.add(rejection, 1);
                }
            }
            if rejections.total() > 0 {
                for scope in request
                    .resource_logs
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_logs)
                {
                    scope
                        .log_records
                        .retain(|r| log_rejection(&r.trace_id, &r.span_id).is_none());
                }
            }
        }
        OtlpRequest::Metrics(request) => {
            let metrics = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics);
            for metric in metrics {
                if metric.name.is_empty() {
                    rejections.add(
                        Rejection::EmptyMetricName,
                        metric_point_count(metric) as u64,
                    );
                } else if let Some(points) = number_points(metric) {
                    let missing = points.iter().filter(|p| p.value.is_none()).count();
                    rejections.add(Rejection::MissingValue, missing as u64);
                }
            }
            if rejections.total() > 0 {
                for scope in request
                    .resource_metrics
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_metrics)
                {
                    scope.metrics.retain(|m| !m.name.is_empty());
                    for metric in &mut scope.metrics {
                        match &mut metric.data {
                            Some(Data::Gauge(g)) => g.data_points.retain(|p| p.value.is_some()),
                            Some(Data::Sum(s)) => s.data_points.retain(|p| p.value.is_some()),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    rejections
}

fn span_rejection(trace_id: &[u8], span_id: &[u8]) -> Option<Rejection> {
    if !is_valid_id(trace_id, 16) {
        Some(Rejection::InvalidTraceId)
    } else if !is_valid_id(span_id, 8) {
        Some(Rejection::InvalidSpanId)
    } else {
        None
    }
}

fn log_rejection(trace_id: &[u8], span_id: &[u8]) -> Option<Rejection> {
    if !trace_id.is_empty() && trace_id.len() != 16 {
        Some(Rejection::InvalidTraceId)
    } else if !span_id.is_empty() && span_id.len() != 8 {
        Some(Rejection::InvalidSpanId)
    } else {
        None
    }
}

fn number_points(metric: &Metric) -> Option<&[NumberDataPoint]> {
    match &metric.data {
        Some(Data::Gauge(g)) => Some(&g.data_points),
        Some(Data::Sum(s)) => Some(&s.data_points),
        _ => None,
    }
}

/// A reservation of in-flight bytes; gives them back when dropped.
#[derive(Debug)]
pub(crate) struct BudgetPermit {
    _permit: OwnedSemaphorePermit,
    bytes: u32,
    telemetry: CollectorTelemetry,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.telemetry.inflight_bytes_add(-i64::from(self.bytes));
    }
}

/// An accepted request on its way to the deriver, with its budget reservation.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) request: OtlpRequest,
    pub(crate) permit: BudgetPermit,
}

/// What the client is told when its request is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Accepted {
    /// Items rejected in a `partial_success` (0 for a full success).
    pub(crate) rejected: u64,
    /// Why they were rejected (empty for a full success).
    pub(crate) message: String,
}

pub(crate) fn trace_response(accepted: &Accepted) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (accepted.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
            error_message: accepted.message.clone(),
        }),
    }
}

pub(crate) fn metrics_response(accepted: &Accepted) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (accepted.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
            error_message: accepted.message.clone(),
        }),
    }
}

pub(crate) fn logs_response(accepted: &Accepted) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (accepted.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
            error_message: accepted.message.clone(),
        }),
    }
}

/// Why a whole request was refused with a retryable status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No in-flight budget within `backpressure_wait`.
    Budget,
    /// No room in the deriver queue within `backpressure_wait`.
    QueueFull,
    /// The deriver is gone (shutting down).
    ShuttingDown,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Budget => "backpressure",
            Self::QueueFull => "queue_full",
            Self::ShuttingDown => "shutting_down",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Budget => "collector is over its in-flight byte budget, retry later",
            Self::QueueFull => "collector queue is full, retry later",
            Self::ShuttingDown => "collector is shutting down, retry later",
        }
    }
}

/// The shared entrance of both receivers: screening, byte budget and deriver queue.
#[derive(Debug, Clone)]
pub(crate) struct Intake {
    inner: Arc<IntakeInner>,
}

#[derive(Debug)]
struct IntakeInner {
    budget: Arc<Semaphore>,
    max_inflight_bytes: u32,
    max_body_bytes: usize,
    backpressure_wait: Duration,
    retry_after: Duration,
    queue: mpsc::Sender<Admitted>,
    telemetry: CollectorTelemetry,
}

/// Limits of the intake, from the `[collector.otlp]` section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntakeLimits {
    pub(crate) max_inflight_bytes: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) backpressure_wait: Duration,
    pub(crate) retry_after: Duration,
}

impl Intake {
    pub(crate) fn new(
        limits: IntakeLimits,
        queue: mpsc::Sender<Admitted>,
        telemetry: CollectorTelemetry,
    ) -> Self {
        Self {
            inner: Arc::new(IntakeInner {
                budget: Arc::new(Semaphore::new(limits.max_inflight_bytes as usize)),
                max_inflight_bytes: limits.max_inflight_bytes,
                max_body_bytes: limits.max_body_bytes,
                backpressure_wait: limits.backpressure_wait,
                retry_after: limits.retry_after,
                queue,
                telemetry,
            }),
        }
    }

    pub(crate) fn telemetry(&self) -> &CollectorTelemetry {
        &self.inner.telemetry
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    pub(crate) fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }

    /// Screens, budgets and queues one decoded request of `size_bytes` bytes.
    ///
    /// Counts accepted and refused items; the caller counts the request outcome.
    pub(crate) async fn admit(
        &self,
        mut request: OtlpRequest,
        size_bytes: usize,
    ) -> Result<Accepted, Refusal> {
        let inner = &*self.inner;
        let signal = request.kind().signal();
        let rejections = screen(&mut request);
        for (rejection, items) in rejections.iter() {
            inner.telemetry.refused(signal, rejection.reason(), items);
        }
        let accepted = Accepted {
            rejected: rejections.total(),
            message: rejections.message(signal),
        };
        let items = request.item_count();
        if items == 0 {
            return Ok(accepted);
        }

        let deadline = Instant::now() + inner.backpressure_wait;
        let bytes = u32::try_from(size_bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, inner.max_inflight_bytes);
        let permit = match self.reserve(bytes, deadline).await {
            Some(permit) => permit,
            None => {
                inner
                    .telemetry
                    .refused(signal, Refusal::Budget.reason(), items);
                return Err(Refusal::Budget);
            }
        };
        inner.telemetry.queue_depth_add(1);
        let admitted = Admitted { request, permit };
        let sent = if inner.backpressure_wait.is_zero() {
            inner.queue.try_send(admitted).map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => Refusal::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Refusal::ShuttingDown,
            })
        } else {
            let wait = deadline.saturating_duration_since(Instant::now());
            inner
                .queue
                .send_timeout(admitted, wait)
                .await
                .map_err(|err| match err {
                    SendTimeoutError::Timeout(_) => Refusal::QueueFull,
                    SendTimeoutError::Closed(_) => Refusal::ShuttingDown,
                })
        };
        if let Err(refusal) = sent {
            inner.telemetry.queue_depth_add(-1);
            inner.telemetry.refused(signal, refusal.reason(), items);
            return Err(refusal);
        }
        inner.telemetry.accepted(signal, items);
        Ok(accepted)
    }

    async fn reserve(&self, bytes: u32, deadline: Instant) -> Option<BudgetPermit> {
        let inner = &*self.inner;
        let permit = match inner.budget.clone().try_acquire_many_owned(bytes) {
            Ok(permit) => permit,
            Err(_) if inner.backpressure_wait.is_zero() => return None,
            Err(_) => {
                let acquire = inner.budget.clone().acquire_many_owned(bytes);
                tokio::time::timeout_at(deadline, acquire)
                    .await
                    .ok()?
                    .ok()?
            }
        };
        inner.telemetry.inflight_bytes_add(i64::from(bytes));
        Some(BudgetPermit {
            _permit: permit,
            bytes,
            telemetry: inner.telemetry.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders of OTLP requests shared by the tests of the receivers and the deriver.

    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};

    use super::*;

    pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        }
    }

    pub(crate) fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        })
    }

    /// A span of `latency_ms` ending at `end_ms`, with status ERROR when `error`.
    pub(crate) fn span(index: u64, end_ms: u64, latency_ms: u64, error: bool) -> Span {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(index + 1).to_be_bytes());
        Span {
            trace_id: trace_id.to_vec(),
            span_id: (index + 1).to_be_bytes().to_vec(),
            name: format!("span-{index}"),
            start_time_unix_nano: (end_ms - latency_ms) * 1_000_000,
            end_time_unix_nano: end_ms * 1_000_000,
            status: Some(Status {
                code: if error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Ok as i32
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(crate) fn log(severity_number: i32, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.to_owned())),
            }),
            ..Default::default()
        }
    }

    pub(crate) fn logs(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(service),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(crate) fn gauge_point(attributes: Vec<KeyValue>, value: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    pub(crate) fn metrics(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(crate) fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.to_owned(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        }
    }

    /// A trace request of every shape the deriver and the trace scan tell apart: stages from
    /// span and resource attributes (string, int, bool, empty, valueless, repeated keys), errors,
    /// job runs by attribute and by name (`nightly-export`), rejected ids, events, links,
    /// several scopes and resources, one without a resource, and probe trace ids (`pwpb`).
    pub(crate) fn mixed_traces() -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValueList};
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

        let with = |mut span: Span, attributes: Vec<KeyValue>| {
            span.attributes = attributes;
            span
        };
        let value = |value: any_value::Value| AnyValue { value: Some(value) };
        let typed = |key: &str, v: any_value::Value| KeyValue {
            key: key.to_owned(),
            value: Some(value(v)),
            ..Default::default()
        };
        let nested = typed(
            "map",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", "v"), kv("pipeline.stage", "deep")],
            }),
        );
        let mut probe = span(6, 40_000, 12, false);
        probe.trace_id[..4].copy_from_slice(b"pwpb");
        probe.attributes = vec![kv("pipeline.stage", "enrich")];
        let mut probe_plain = span(7, 40_000, 3, true);
        probe_plain.trace_id[..4].copy_from_slice(b"pwpb");
        let mut short_trace_id = span(8, 10_000, 1, false);
        short_trace_id.trace_id.pop();
        let mut zero_span_id = span(9, 10_000, 1, true);
        zero_span_id.span_id = vec![0; 8];
        let mut by_name = span(10, 50_000, 2_500, true);
        by_name.name = "nightly-export".to_owned();
        let mut rich = with(
            span(11, 30_000, 40, false),
            vec![
                kv("pipeline.stage", ""),
                kv("messaging.destination.name", "q1"),
                kv("k", "first"),
                kv("k", "second"),
                nested,
            ],
        );
        rich.name = "déjà vu".to_owned();
        rich.trace_state = "rojo=00f067aa0ba902b7".to_owned();
        rich.parent_span_id = vec![5; 8];
        rich.kind = 2;
        rich.flags = 0x101;
        rich.status = None;
        rich.dropped_attributes_count = 3;
        rich.dropped_events_count = 1;
        rich.dropped_links_count = 2;
        rich.events = vec![Event {
            time_unix_nano: 7,
            name: "checkpoint".to_owned(),
            attributes: vec![kv("e", "v")],
            dropped_attributes_count: 1,
        }];
        rich.links = vec![Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "a=b".to_owned(),
            attributes: vec![kv("l", "v")],
            dropped_attributes_count: 0,
            flags: 1,
        }];
        if let Some(status) = by_name.status.as_mut() {
            status.message = "boom".to_owned();
        }
        let valueless = KeyValue {
            key: "pipeline.stage".to_owned(),
            ..Default::default()
        };
        let orders = ResourceSpans {
            resource: resource("orders"),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".to_owned(),
                        version: "1.2".to_owned(),
                        attributes: vec![kv("scope.k", "v")],
                        dropped_attributes_count: 0,
                    }),
                    spans: vec![
                        with(
                            span(0, 20_000, 5, false),
                            vec![kv("pipeline.stage", "enrich")],
                        ),
                        with(
                            span(1, 20_000, 9, true),
                            vec![typed("pipeline.stage", any_value::Value::IntValue(7))],
                        ),
                        with(span(2, 20_000, 30, false), vec![kv("job.name", "compact")]),
                        with(span(3, 20_000, 31, true), vec![kv("job.name", "compact")]),
                        by_name,
                        short_trace_id,
                        zero_span_id,
                        rich,
                        with(
                            span(12, 20_000, 2, false),
                            vec![valueless, kv("pipeline.stage", "later")],
                        ),
                        with(
                            span(13, 20_000, 2, false),
                            vec![typed("pipeline.stage", any_value::Value::BoolValue(true))],
                        ),
                        probe,
                    ],
                    schema_url: "https://example.com/schema".to_owned(),
                },
                ScopeSpans {
                    spans: vec![span(14, 20_000, 8, true), probe_plain],
                    ..Default::default()
                },
            ],
            schema_url: "https://example.com/resource".to_owned(),
        };
        let mut ingest = traces("ingest", vec![]).resource_spans;
        if let Some(resource) = ingest[0].resource.as_mut() {
            resource.attributes.push(kv("pipeline.stage", "extract"));
        }
        ingest[0].scope_spans[0].spans = vec![
            span(15, 20_000, 4, false),
            with(
                span(16, 20_000, 6, false),
                vec![kv("pipeline.stage", "load")],
            ),
        ];
        let mut anonymous = traces("x", vec![span(17, 20_000, 1, false)]).resource_spans;
        anonymous[0].resource = None;
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![orders],
        };
        request.resource_spans.extend(ingest);
        request.resource_spans.extend(anonymous);
        request
    }

    /// Wraps a request as the intake would, with a one-byte budget reservation.
    pub(crate) fn admitted(request: OtlpRequest, telemetry: &CollectorTelemetry) -> Admitted {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        telemetry.inflight_bytes_add(1);
        telemetry.queue_depth_add(1);
        Admitted {
            request,
            permit: BudgetPermit {
                _permit: permit,
                bytes: 1,
                telemetry: telemetry.clone(),
            },
        }
    }

    /// An intake over a fresh queue of `capacity` requests.
    pub(crate) fn intake(
        max_inflight_bytes: u32,
        capacity: usize,
    ) -> (Intake, mpsc::Receiver<Admitted>, CollectorTelemetry) {
        let telemetry = CollectorTelemetry::for_tests();
        let (tx, rx) = mpsc::channel(capacity);
        let limits = IntakeLimits {
            max_inflight_bytes,
            max_body_bytes: max_inflight_bytes as usize,
            backpressure_wait: Duration::from_millis(20),
            retry_after: Duration::from_secs(2),
        };
        (Intake::new(limits, tx, telemetry.clone()), rx, telemetry)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn invalid_ids_are_rejected_and_the_rest_accepted() {
        let (intake, mut rx, telemetry) = intake(1 << 20, 4);
        let mut bad_trace = span(1, 1_000, 5, false);
        bad_trace.trace_id.truncate(8);
        let mut zero_span = span(2, 1_000, 5, false);
        zero_span.span_id = vec![0; 8];
        let request = traces("svc", vec![span(0, 1_000, 5, false), bad_trace, zero_span]);
        let accepted = intake
            .admit(OtlpRequest::Traces(request), 100)
            .await
            .unwrap();
        assert_eq!(accepted.rejected, 2);
        assert!(
            accepted.message.contains("trace_id must be 16 bytes"),
            "{}",
            accepted.message
        );
        assert!(
            accepted.message.contains("span_id must be 8 bytes"),
            "{}",
            accepted.message
        );
        let admitted = rx.try_recv().unwrap();
        assert_eq!(admitted.request.item_count(), 1);
        assert_eq!(telemetry.accepted_count(Signal::Spans), 1);
        assert_eq!(
            telemetry.refused_count(Signal::Spans, "invalid_trace_id"),
            1
        );
        assert_eq!(telemetry.refused_count(Signal::Spans, "invalid_span_id"), 1);
        assert_eq!(telemetry.inflight_bytes(), 100);
        assert_eq!(telemetry.queue_depth(), 1);
        drop(admitted);
        assert_eq!(telemetry.inflight_bytes(), 0);
    }

    #[tokio::test]
    async fn metric_points_without_value_or_name_are_rejected() {
        let (intake, mut rx, telemetry) = intake(1 << 20, 4);
        let mut no_value = gauge_point(vec![], 1.0);
        no_value.value = None;
        let request = metrics(
            "svc",
            vec![
                gauge("ok", vec![gauge_point(vec![], 1.0), no_value]),
                gauge("", vec![gauge_point(vec![], 1.0), gauge_point(vec![], 2.0)]),
            ],
        );
        let accepted = intake
            .admit(OtlpRequest::Metrics(request), 10)
            .await
            .unwrap();
        assert_eq!(accepted.rejected, 3);
        assert_eq!(rx.try_recv().unwrap().request.item_count(), 1);
        assert_eq!(
            telemetry.refused_count(Signal::MetricPoints, "missing_value"),
            1
        );
        assert_eq!(
            telemetry.refused_count(Signal::MetricPoints, "empty_metric_name"),
            2
        );
    }

    #[tokio::test]
    async fn log_ids_may_be_empty_but_not_of_the_wrong_length() {
        let (intake, mut rx, _) = intake(1 << 20, 4);
        let mut wrong = log(9, "x");
        wrong.span_id = vec![1; 3];
        let request = logs("svc", vec![log(9, "a"), wrong]);
        let accepted = intake.admit(OtlpRequest::Logs(request), 10).await.unwrap();
        assert_eq!(accepted.rejected, 1);
        assert_eq!(rx.try_recv().unwrap().request.item_count(), 1);
    }

    #[tokio::test]
    async fn empty_request_is_a_success_without_queueing() {
        let (intake, mut rx, _) = intake(1 << 20, 4);
        let accepted = intake
            .admit(OtlpRequest::Traces(ExportTraceServiceRequest::default()), 0)
            .await
            .unwrap();
        assert_eq!(accepted, Accepted::default());
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_budget_refuses_after_the_wait_and_releases_on_processing() {
        let (intake, mut rx, telemetry) = intake(1_000, 8);
        let request = OtlpRequest::Traces(traces("svc", vec![span(0, 1_000, 5, false)]));
        intake.admit(request.clone(), 800).await.unwrap();
        let refused = intake.admit(request.clone(), 800).await.unwrap_err();
        assert_eq!(refused, Refusal::Budget);
        assert_eq!(telemetry.refused_count(Signal::Spans, "backpressure"), 1);
        // The deriver processing the first request gives its bytes back.
        drop(rx.recv().await.unwrap());
        intake.admit(request, 800).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_refuses() {
        let (intake, _rx, telemetry) = intake(1 << 20, 1);
        let request = OtlpRequest::Logs(logs("svc", vec![log(9, "a")]));
        intake.admit(request.clone(), 10).await.unwrap();
        assert_eq!(
            intake.admit(request, 10).await.unwrap_err(),
            Refusal::QueueFull
        );
        assert_eq!(telemetry.refused_count(Signal::LogRecords, "queue_full"), 1);
        // The refused request's bytes went back.
        assert_eq!(telemetry.inflight_bytes(), 10);
        assert_eq!(telemetry.queue_depth(), 1);
    }
}
