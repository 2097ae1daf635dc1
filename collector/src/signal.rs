//! Signals derived from OTLP data, per pipeline stage.
//!
//! The collector turns raw OTLP requests into a stream of [`SignalBatch`]es: windowed series points
//! (span throughput, latency percentiles, error ratio, log rates per severity, every metric point),
//! per-stage window figures, the log records themselves (for the log detector) and batch-job runs.
//!
//! A *stage* is named by the resource `service.name`, refined by the first configured stage
//! attribute found on the item (for example `pipeline.stage`, `messaging.destination.name` or
//! `job.name`): `service` or `service/value`.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use serde::{Deserialize, Serialize};

/// The identity of a series: its key, stage, name and attributes.
///
/// A series is identified by [`Series::key`], a canonical string built from the stage, the
/// signal name and the sorted attributes (see [`series_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Series {
    /// Canonical series key, `stage|name|k1=v1,k2=v2` with attributes sorted by key.
    pub key: String,
    /// Stage the series belongs to.
    pub stage: String,
    /// Signal name, e.g. `span.throughput_per_s`, `span.latency_p95_ms`, or an OTLP metric name.
    pub name: String,
    /// Attributes of the series, sorted by key.
    pub attributes: Vec<(String, String)>,
    /// What the values are: readings, or running totals or increments whose rate the detector
    /// scores.
    #[serde(default)]
    pub kind: SeriesKind,
}

/// What the values of a series are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Each value is a reading in its own right (a gauge, a delta sum, a quantile, a derived
    /// figure): the detector scores the value.
    #[default]
    Reading,
    /// Each value is a running total since a start: a monotonic cumulative sum, or the count or
    /// sum of a cumulative histogram or of a summary. The values are stored as sent; the detector
    /// scores the total's rate per second between consecutive points (a ramp is not news, a
    /// rate that drops to zero is), as Prometheus's `rate()` reads a counter.
    RunningTotal,
    /// Each value is the increase over its own interval, from the point's start time: a
    /// monotonic sum of delta temporality, or the count or sum of a delta histogram. The values
    /// are stored as sent; the detector scores each one divided by its interval, a rate per
    /// second, so an export that covers a shorter interval (a flush at shutdown) is no drop.
    Increment,
}

/// `AggregationTemporality` values, as on the wire.
const DELTA: i64 = AggregationTemporality::Delta as i64;
const CUMULATIVE: i64 = AggregationTemporality::Cumulative as i64;

impl SeriesKind {
    /// The kind of the values of a `Sum` of `temporality` (as on the wire).
    pub(crate) fn of_sum(monotonic: bool, temporality: i64) -> Self {
        if monotonic {
            Self::of_histogram(temporality)
        } else {
            Self::Reading
        }
    }

    /// The kind of the count and sum of a histogram of `temporality` (as on the wire).
    pub(crate) fn of_histogram(temporality: i64) -> Self {
        match temporality {
            CUMULATIVE => Self::RunningTotal,
            DELTA => Self::Increment,
            _ => Self::Reading,
        }
    }

    /// A byte naming the kind (in keys of caches).
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Reading => 0,
            Self::RunningTotal => 1,
            Self::Increment => 2,
        }
    }
}

impl Series {
    /// The series `stage`, `name`, `attributes` (sorted by key), its key built with
    /// [`series_key`]; its values are readings.
    pub fn new(stage: &str, name: &str, attributes: Vec<(String, String)>) -> Self {
        Self {
            key: series_key(stage, name, &attributes),
            stage: stage.to_owned(),
            name: name.to_owned(),
            attributes,
            kind: SeriesKind::Reading,
        }
    }

    /// The same series with values of `kind`.
    pub fn with_kind(self, kind: SeriesKind) -> Self {
        Self { kind, ..self }
    }
}

/// One value of one series at one time.
///
/// The series is shared: the points of one series point at the same [`Series`], so a point of a
/// known series costs no allocation of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The series the point belongs to.
    pub series: Arc<Series>,
    /// Time of the point (end of the window for derived signals), Unix milliseconds.
    pub timestamp_ms: i64,
    /// Value of the point.
    pub value: f64,
    /// Start of the interval an [`SeriesKind::Increment`] covers, Unix milliseconds; 0 when
    /// unknown, and for the other kinds.
    #[serde(default)]
    pub start_ms: i64,
}

impl SeriesPoint {
    /// A point of the series `stage`, `name`, `attributes` (sorted by key).
    pub fn new(
        stage: &str,
        name: &str,
        attributes: Vec<(String, String)>,
        timestamp_ms: i64,
        value: f64,
    ) -> Self {
        Self {
            series: Arc::new(Series::new(stage, name, attributes)),
            timestamp_ms,
            value,
            start_ms: 0,
        }
    }
}

/// Figures of one stage over one closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StageWindow {
    /// Stage name.
    pub stage: String,
    /// Window start, Unix milliseconds (inclusive).
    pub window_start_ms: i64,
    /// Window end, Unix milliseconds (exclusive).
    pub window_end_ms: i64,
    /// Spans received in the window.
    pub spans: u64,
    /// Spans with status ERROR in the window.
    pub span_errors: u64,
    /// Span latency percentiles in milliseconds (`None` without spans).
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile span latency, milliseconds.
    pub latency_p95_ms: Option<f64>,
    /// 99th percentile span latency, milliseconds.
    pub latency_p99_ms: Option<f64>,
    /// Metric data points received in the window.
    pub metric_points: u64,
    /// Log records received in the window.
    pub log_records: u64,
    /// Log records per severity text (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`,
    /// `UNSPECIFIED`), sorted by severity.
    pub logs_by_severity: Vec<(String, u64)>,
}

/// One OTLP log record, kept for the log detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Stage the record belongs to.
    pub stage: String,
    /// Record time (or observed time when the record has none), Unix milliseconds.
    pub timestamp_ms: i64,
    /// OTLP severity number (0 when unspecified).
    pub severity_number: i32,
    /// Severity text as sent, or derived from the number.
    pub severity_text: String,
    /// Body rendered as a string (strings as-is, other values as JSON).
    pub body: String,
    /// Record attributes as a JSON object.
    pub attributes: serde_json::Value,
    /// Trace id, lowercase hex (empty when absent).
    pub trace_id: String,
    /// Span id, lowercase hex (empty when absent).
    pub span_id: String,
}

/// Status of a batch-job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// The run succeeded (span status OK or UNSET).
    Ok,
    /// The run failed (span status ERROR).
    Error,
}

/// One run of a scheduled batch job, reported as a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// Job name (value of the job attribute, or the span name).
    pub job: String,
    /// Stage the job belongs to.
    pub stage: String,
    /// Trace id, lowercase hex.
    pub trace_id: String,
    /// Span id, lowercase hex.
    pub span_id: String,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// End, Unix milliseconds.
    pub end_ms: i64,
    /// Runtime in milliseconds.
    pub runtime_ms: f64,
    /// Outcome of the run.
    pub status: JobStatus,
}

/// What the collector emits downstream: everything derived since the previous batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalBatch {
    /// Series points (windowed span/log signals, job series, and every metric point).
    pub points: Vec<SeriesPoint>,
    /// Closed stage windows.
    pub stage_windows: Vec<StageWindow>,
    /// Log records, in arrival order.
    pub logs: Vec<LogRecord>,
    /// Batch-job runs.
    pub job_runs: Vec<JobRun>,
}

impl SignalBatch {
    /// Returns true when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
            && self.stage_windows.is_empty()
            && self.logs.is_empty()
            && self.job_runs.is_empty()
    }
}

/// Builds the canonical series key `stage|name|k1=v1,k2=v2` (attributes must be sorted by key).
pub fn series_key(stage: &str, name: &str, attributes: &[(String, String)]) -> String {
    let mut key = String::with_capacity(stage.len() + name.len() + 2 + attributes.len() * 16);
    key.push_str(stage);
    key.push('|');
    key.push_str(name);
    key.push('|');
    for (i, (k, v)) in attributes.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}
