//! What the alert engine observes. The types are plain data so every source (collector,
//! detector, Kafka lag source, synthetic probes) can be mapped onto them by the app.

use pipewarden_collector::{SeriesPoint, StageWindow};
use serde::{Deserialize, Serialize};

use crate::anomaly::Anomaly;

/// One value of one series (a derived signal, a stage figure or a metric point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointInput {
    /// Canonical series key, `stage|name|k=v`.
    pub key: String,
    /// Stage of the series.
    pub stage: String,
    /// Signal name, e.g. `span.error_ratio`.
    pub name: String,
    /// Attributes of the series, sorted by key.
    pub attributes: Vec<(String, String)>,
    /// Time of the point, Unix ms.
    pub timestamp_ms: i64,
    /// Value.
    pub value: f64,
    /// Detector score (0-100) when the point was scored; anomaly rules count these.
    pub score: Option<f64>,
}

impl PointInput {
    /// Builds the input from a collector point and its detector score.
    pub fn from_series_point(point: &SeriesPoint, score: Option<f64>) -> Self {
        Self {
            key: point.series.key.clone(),
            stage: point.series.stage.clone(),
            name: point.series.name.clone(),
            attributes: point.series.attributes.clone(),
            timestamp_ms: point.timestamp_ms,
            value: point.value,
            score,
        }
    }
}

/// A point the detector found anomalous.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyInput {
    /// Canonical series key.
    pub key: String,
    /// Stage of the series.
    pub stage: String,
    /// Signal name.
    pub name: String,
    /// Time of the point, Unix ms.
    pub timestamp_ms: i64,
    /// Observed value.
    pub value: f64,
    /// Score, 0-100.
    pub score: f64,
    /// What the model expected, when known.
    pub typical: Option<f64>,
}

impl From<&Anomaly> for AnomalyInput {
    fn from(a: &Anomaly) -> Self {
        Self {
            key: a.series_key.clone(),
            stage: a.stage.clone(),
            name: a.name.clone(),
            timestamp_ms: a.timestamp_ms,
            value: a.actual,
            score: a.score,
            typical: Some(a.typical),
        }
    }
}

/// The verdict on one Kafka consumer group after a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LagVerdictInput {
    /// Cluster name.
    pub cluster: String,
    /// Consumer group.
    pub group: String,
    /// `OK`, `WARN`, `REWIND`, `STALL`, `STOP` or `ERR` (unknown text ranks as `WARN`).
    pub status: String,
    /// Poll time, Unix ms.
    pub timestamp_ms: i64,
}

/// One run of a synthetic probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResultInput {
    /// Probe name.
    pub probe: String,
    /// True when the probe succeeded.
    pub up: bool,
    /// When the run ended, Unix ms.
    pub timestamp_ms: i64,
    /// Duration of the run, ms.
    pub latency_ms: f64,
}

/// Good and total events of a span SLI over one window of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanSliInput {
    /// Stage.
    pub stage: String,
    /// SLI name (`success`: spans not in error).
    pub sli: String,
    /// Window end, Unix ms.
    pub timestamp_ms: i64,
    /// Good events.
    pub good: u64,
    /// All events (good ones included).
    pub total: u64,
}

impl SpanSliInput {
    /// Returns the `success` SLI of a stage window: spans not in error out of all spans.
    pub fn success_from_window(window: &StageWindow) -> Self {
        Self {
            stage: window.stage.clone(),
            sli: "success".to_owned(),
            timestamp_ms: window.window_end_ms,
            good: window.spans.saturating_sub(window.span_errors),
            total: window.spans,
        }
    }
}

/// One input of the alert engine.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    /// A series point (with its score when scored).
    Point(PointInput),
    /// An anomaly.
    Anomaly(AnomalyInput),
    /// A consumer group verdict.
    Lag(LagVerdictInput),
    /// A probe run.
    Probe(ProbeResultInput),
    /// SLI counts of a stage window.
    SpanSli(SpanSliInput),
    /// A closed stage window (feeds `span_success` and `span_latency` SLIs).
    StageWindow(StageWindow),
}

impl AlertEvent {
    /// Returns a low-cardinality name of the kind (`point`, `anomaly`, `lag`, `probe`,
    /// `span_sli`, `stage_window`), the telemetry label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Point(_) => "point",
            Self::Anomaly(_) => "anomaly",
            Self::Lag(_) => "lag",
            Self::Probe(_) => "probe",
            Self::SpanSli(_) => "span_sli",
            Self::StageWindow(_) => "stage_window",
        }
    }
}
