//! The prober's own instruments, registered once; names follow
//! `pipewarden_synthetic_<noun>_<unit>`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of per-probe counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    /// Probe name (bounded by the configuration).
    pub probe: String,
}

/// Labels of run outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Probe name.
    pub probe: String,
    /// `up`, `down` or `timeout`.
    pub status: String,
}

/// Labels of dropped items.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Instruments of the synthetic prober; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SyntheticTelemetry {
    /// Probe events injected (`pipewarden_synthetic_events_sent_total`).
    pub events_sent: Family<ProbeLabel, Counter>,
    /// Injection attempts that failed (`pipewarden_synthetic_events_send_failed_total`).
    pub events_send_failed: Family<ProbeLabel, Counter>,
    /// Probe events observed (`pipewarden_synthetic_events_received_total`).
    pub events_received: Family<ProbeLabel, Counter>,
    /// Runs per outcome (`pipewarden_synthetic_runs_total`).
    pub runs: Family<RunLabels, Counter>,
    /// Items dropped (`pipewarden_synthetic_dropped_total{reason}`): `max_pending_runs`,
    /// `foreign_event`, `result_queue_closed`.
    pub dropped: Family<ReasonLabel, Counter>,
}

impl SyntheticTelemetry {
    /// Creates the instruments and registers them under `pipewarden_synthetic_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let t = Self::default();
        let r = registry.sub_registry_with_prefix("pipewarden_synthetic");
        r.register(
            "events_sent",
            "Probe events injected",
            t.events_sent.clone(),
        );
        r.register(
            "events_send_failed",
            "Probe event injection attempts that failed",
            t.events_send_failed.clone(),
        );
        r.register(
            "events_received",
            "Probe events observed downstream",
            t.events_received.clone(),
        );
        r.register("runs", "Probe runs per outcome", t.runs.clone());
        r.register("dropped", "Items the prober dropped", t.dropped.clone());
        t
    }

    pub(crate) fn drop_one(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
