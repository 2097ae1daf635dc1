//! Instruments of the alert service, registered once into the app's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of per-input-kind counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Input kind (`point`, `anomaly`, `lag`, `probe`, `span_sli`, `stage_window`).
    pub kind: String,
}

/// Label of per-status gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `pending`, `firing` or `muted` (firing but silenced or inhibited).
    pub status: String,
}

/// Label of per-receiver instruments.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    /// Receiver name.
    pub receiver: String,
}

/// Label of per-receiver drop and failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverReasonLabel {
    /// Receiver name.
    pub receiver: String,
    /// `timeout`, `connect`, `status_5xx`, `status_429`, `rejected`, `expired`, ...
    pub reason: String,
}

/// Label of the input drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the input was dropped (`queue_full`, `closed`).
    pub reason: String,
}

/// The alert service's instruments; cheap to clone (all handles are shared).
#[derive(Clone, Debug, Default)]
pub struct AlertTelemetry {
    /// Inputs accepted by the service, per kind.
    pub inputs: Family<KindLabel, Counter>,
    /// Input batches dropped before reaching the service, per reason.
    pub inputs_dropped: Family<ReasonLabel, Counter>,
    /// Inputs rules ignored at `max_series_per_rule`.
    pub untracked: Counter,
    /// Rule evaluations.
    pub evaluations: Counter,
    /// Alerts per status.
    pub alerts: Family<StatusLabel, Gauge>,
    /// Notifications made by the engine.
    pub notifications: Counter,
    /// Notifications delivered, per receiver.
    pub sent: Family<ReceiverLabel, Counter>,
    /// Failed delivery attempts (each is retried), per receiver and reason.
    pub send_failed: Family<ReceiverReasonLabel, Counter>,
    /// Notifications given up on, per receiver and reason (`rejected`, `expired`).
    pub dropped: Family<ReceiverReasonLabel, Counter>,
    /// Undelivered notifications, per receiver.
    pub outbox_pending: Family<ReceiverLabel, Gauge>,
    /// 1 when the receiver's last attempt succeeded (or none failed yet), 0 when failing.
    pub receiver_up: Family<ReceiverLabel, Gauge>,
    /// Unix time, seconds, of the last delivery, per receiver.
    pub receiver_last_success: Family<ReceiverLabel, Gauge>,
    /// Failed writes to the alert tables (state is retried at the next evaluation).
    pub store_errors: Counter,
}

impl AlertTelemetry {
    /// Builds the instruments and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let t = Self::default();
        registry.register(
            "pipewarden_alert_inputs",
            "Inputs accepted by the alert service, per kind",
            t.inputs.clone(),
        );
        registry.register(
            "pipewarden_alert_inputs_dropped",
            "Input batches dropped before the alert service, per reason",
            t.inputs_dropped.clone(),
        );
        registry.register(
            "pipewarden_alert_untracked",
            "Inputs ignored because a rule tracks max_series_per_rule instances",
            t.untracked.clone(),
        );
        registry.register(
            "pipewarden_alert_evaluations",
            "Rule evaluations",
            t.evaluations.clone(),
        );
        registry.register(
            "pipewarden_alert_alerts",
            "Alerts per status (pending, firing, muted)",
            t.alerts.clone(),
        );
        registry.register(
            "pipewarden_alert_notifications",
            "Notifications made by the alert engine",
            t.notifications.clone(),
        );
        registry.register(
            "pipewarden_alert_notifications_sent",
            "Notifications delivered, per receiver",
            t.sent.clone(),
        );
        registry.register(
            "pipewarden_alert_notifications_send_failed",
            "Failed delivery attempts (retried), per receiver and reason",
            t.send_failed.clone(),
        );
        registry.register(
            "pipewarden_alert_notifications_dropped",
            "Notifications given up on, per receiver and reason",
            t.dropped.clone(),
        );
        registry.register(
            "pipewarden_alert_outbox_pending",
            "Undelivered notifications, per receiver",
            t.outbox_pending.clone(),
        );
        registry.register(
            "pipewarden_alert_receiver_up",
            "1 when the receiver's last delivery attempt succeeded, 0 when it is failing",
            t.receiver_up.clone(),
        );
        registry.register(
            "pipewarden_alert_receiver_last_success_timestamp_seconds",
            "Unix time of the last delivery, per receiver",
            t.receiver_last_success.clone(),
        );
        registry.register(
            "pipewarden_alert_store_errors",
            "Failed writes to the alert tables",
            t.store_errors.clone(),
        );
        t
    }

    pub(crate) fn receiver(&self, name: &str) -> ReceiverLabel {
        ReceiverLabel {
            receiver: name.to_owned(),
        }
    }

    pub(crate) fn receiver_reason(&self, name: &str, reason: &str) -> ReceiverReasonLabel {
        ReceiverReasonLabel {
            receiver: name.to_owned(),
            reason: reason.to_owned(),
        }
    }
}
