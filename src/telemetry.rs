//! The app's own instruments (pipeline, detector, store), registered once into the Prometheus
//! registry that `/metrics` renders. The collector registers its own in the same registry.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of store and pipeline counters per table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// Table name.
    pub table: String,
}

/// Label of drop counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the items were dropped.
    pub reason: String,
}

/// Instruments of the app's components; cheap to clone (all handles are shared).
#[derive(Clone, Debug, Default)]
pub struct AppTelemetry {
    /// Batches waiting between the collector and the detector.
    pub pipeline_queue_depth: Gauge,
    /// Batches waiting for the store writer.
    pub store_queue_depth: Gauge,
    /// Rows written per table.
    pub store_writes_total: Family<TableLabel, Counter>,
    /// Failed store transactions (each is retried).
    pub store_write_errors: Counter,
    /// Rows the store dropped after exhausting retries, per reason.
    pub store_dropped_rows: Family<ReasonLabel, Counter>,
    /// 1 when the last store transaction succeeded.
    pub store_last_write_ok: Gauge,
    /// Committed transactions that wrote pipeline batches (`store.commit_delay` gathers
    /// batches into fewer of them).
    pub store_transactions: Counter,
    /// Points scored by the detector.
    pub detector_points_scored: Counter,
    /// Series points stored without scoring, closer than `detector.min_point_interval` to their
    /// series' last scored point.
    pub detector_points_thinned: Counter,
    /// Anomalies found.
    pub detector_anomalies: Counter,
    /// Series currently held by the detector.
    pub detector_series: Gauge,
    /// Series evicted from the detector at its cap.
    pub detector_evictions: Counter,
    /// Approximate bytes of detector state per series.
    pub detector_bytes_per_series: Gauge<u64, AtomicU64>,
}

impl AppTelemetry {
    /// Builds the instruments and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let t = Self::default();
        t.store_last_write_ok.set(1);
        registry.register(
            "pipewarden_pipeline_queue_depth",
            "Batches waiting between the collector and the detector",
            t.pipeline_queue_depth.clone(),
        );
        registry.register(
            "pipewarden_store_queue_depth",
            "Batches waiting for the store writer",
            t.store_queue_depth.clone(),
        );
        registry.register(
            "pipewarden_store_writes",
            "Rows written to the local store, per table",
            t.store_writes_total.clone(),
        );
        registry.register(
            "pipewarden_store_write_errors",
            "Failed store transactions (each is retried)",
            t.store_write_errors.clone(),
        );
        registry.register(
            "pipewarden_store_dropped_rows",
            "Rows dropped after the store exhausted its retries, per reason",
            t.store_dropped_rows.clone(),
        );
        registry.register(
            "pipewarden_store_last_write_ok",
            "1 when the last store transaction succeeded",
            t.store_last_write_ok.clone(),
        );
        registry.register(
            "pipewarden_store_transactions",
            "Committed store transactions that wrote pipeline batches",
            t.store_transactions.clone(),
        );
        registry.register(
            "pipewarden_detector_points_scored",
            "Series points scored by the detector",
            t.detector_points_scored.clone(),
        );
        registry.register(
            "pipewarden_detector_points_thinned",
            "Series points stored without scoring: closer than detector.min_point_interval to \
             their series' last scored point",
            t.detector_points_thinned.clone(),
        );
        registry.register(
            "pipewarden_detector_anomalies",
            "Anomalies found by the detector",
            t.detector_anomalies.clone(),
        );
        registry.register(
            "pipewarden_detector_series",
            "Series currently held by the detector",
            t.detector_series.clone(),
        );
        registry.register(
            "pipewarden_detector_evictions",
            "Series evicted from the detector at its cap",
            t.detector_evictions.clone(),
        );
        registry.register(
            "pipewarden_detector_series_state_bytes",
            "Approximate bytes of detector state per series",
            t.detector_bytes_per_series.clone(),
        );
        t
    }

    /// The write counter of one table.
    pub fn store_writes(&self, table: &str) -> Counter {
        self.store_writes_total
            .get_or_create(&TableLabel {
                table: table.to_owned(),
            })
            .clone()
    }
}
