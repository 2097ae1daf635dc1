//! Instruments of the log detector and of feedback suppression, registered once.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::ReasonLabel;

/// Label of eviction counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What was evicted: `template`, `session`, `rate_series`, `field`.
    pub kind: String,
}

/// Instruments of the log detector; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct DetectTelemetry {
    /// Log records the detector skipped, per reason (`backlog`, `stage_cap`).
    pub skipped: Family<ReasonLabel, Counter>,
    /// Log records the detector processed.
    pub log_records: Counter,
    /// Anomalies found by the log detector.
    pub log_anomalies: Counter,
    /// Anomalies suppressed by false-positive feedback.
    pub suppressed: Counter,
    /// Evictions at the log detector's caps, per kind.
    pub evictions: Family<KindLabel, Counter>,
    /// Stages with log state.
    pub stages: Gauge,
    /// Templates over all stages.
    pub templates: Gauge,
    /// Open log sessions.
    pub open_sessions: Gauge,
    /// Approximate bytes of log-detector state per stage.
    pub bytes_per_stage: Gauge<u64, AtomicU64>,
}

impl DetectTelemetry {
    /// Builds the instruments and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let t = Self::default();
        registry.register(
            "pipewarden_detector_skipped",
            "Log records the log detector skipped (still stored), per reason",
            t.skipped.clone(),
        );
        registry.register(
            "pipewarden_detector_log_records",
            "Log records processed by the log detector",
            t.log_records.clone(),
        );
        registry.register(
            "pipewarden_detector_log_anomalies",
            "Anomalies found by the log detector",
            t.log_anomalies.clone(),
        );
        registry.register(
            "pipewarden_detector_suppressed",
            "Anomalies suppressed by false-positive feedback",
            t.suppressed.clone(),
        );
        registry.register(
            "pipewarden_detector_log_evictions",
            "Evictions at the log detector's caps, per kind",
            t.evictions.clone(),
        );
        registry.register(
            "pipewarden_detector_log_stages",
            "Stages with log-detector state",
            t.stages.clone(),
        );
        registry.register(
            "pipewarden_detector_log_templates",
            "Log templates over all stages",
            t.templates.clone(),
        );
        registry.register(
            "pipewarden_detector_log_open_sessions",
            "Open log sessions",
            t.open_sessions.clone(),
        );
        registry.register(
            "pipewarden_detector_log_stage_state_bytes",
            "Approximate bytes of log-detector state per stage",
            t.bytes_per_stage.clone(),
        );
        t
    }

    /// Counts `n` records skipped for `reason`.
    pub fn skip(&self, reason: &str, n: u64) {
        self.skipped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts `n` evictions of `kind`.
    pub fn evict(&self, kind: &str, n: u64) {
        if n > 0 {
            self.evictions
                .get_or_create(&KindLabel {
                    kind: kind.to_owned(),
                })
                .inc_by(n);
        }
    }
}
