//! The sink's instruments, registered once; call sites are one line each.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `reason` label of failure and drop counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Low-cardinality reason, e.g. `transport`, `too_many_requests`, `mapping`.
    pub reason: String,
}

/// Instruments of the Elasticsearch sink; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct EsTelemetry {
    /// Documents accepted into the spool.
    pub accepted: Counter,
    /// Documents the cluster confirmed (created, or already present).
    pub sent: Counter,
    /// Failed bulk requests and refused items, per reason.
    pub send_failed: Family<ReasonLabel, Counter>,
    /// Item retries.
    pub retried: Counter,
    /// Documents sent to the dead letters.
    pub dead_lettered: Counter,
    /// Documents dropped, per reason (`spool_full` with `when_full = "drop_oldest"`).
    pub dropped: Family<ReasonLabel, Counter>,
    /// Bytes in the spool not yet confirmed.
    pub spool_bytes: Gauge,
    /// Age of the oldest unconfirmed document, seconds.
    pub spool_oldest_age_seconds: Gauge,
    /// Bulk requests in flight.
    pub in_flight: Gauge,
    /// 1 when the cluster passed the health check and the templates are installed.
    pub ready: Gauge,
}

impl EsTelemetry {
    /// Builds the instruments and registers them under `pipewarden_elasticsearch_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let t = Self::default();
        let r = registry.sub_registry_with_prefix("pipewarden_elasticsearch");
        r.register(
            "accepted_documents",
            "Documents accepted into the spool",
            t.accepted.clone(),
        );
        r.register(
            "sent_documents",
            "Documents the cluster confirmed",
            t.sent.clone(),
        );
        r.register(
            "send_failed",
            "Failed bulk requests and refused items, per reason",
            t.send_failed.clone(),
        );
        r.register("retried_documents", "Item retries", t.retried.clone());
        r.register(
            "dead_lettered_documents",
            "Documents sent to the dead letters",
            t.dead_lettered.clone(),
        );
        r.register(
            "dropped_documents",
            "Documents dropped, per reason",
            t.dropped.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes in the spool not yet confirmed",
            t.spool_bytes.clone(),
        );
        r.register(
            "spool_oldest_age_seconds",
            "Age of the oldest unconfirmed document in seconds",
            t.spool_oldest_age_seconds.clone(),
        );
        r.register(
            "in_flight_requests",
            "Bulk requests in flight",
            t.in_flight.clone(),
        );
        r.register(
            "ready",
            "1 when the cluster is healthy and the templates are installed",
            t.ready.clone(),
        );
        t
    }

    pub(crate) fn failed(&self, reason: &str, n: u64) {
        self.send_failed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}
