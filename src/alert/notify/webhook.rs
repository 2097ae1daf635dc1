//! The Alertmanager v4 webhook body:
//!
//! ```json
//! {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
//!  "status": "firing", "receiver": "ops", "groupLabels": {...}, "commonLabels": {...},
//!  "commonAnnotations": {...}, "externalURL": "http://...",
//!  "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
//!              "startsAt": "RFC 3339", "endsAt": "0001-01-01T00:00:00Z",
//!              "generatorURL": "...", "fingerprint": "..."}]}
//! ```

use serde_json::{Value, json};

use crate::alert::config::WebhookReceiverConfig;
use crate::alert::model::{Alert, AlertStatus, Notification, rfc3339};

/// Alertmanager's "no end" time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Renders one alert as in Alertmanager's webhook and API bodies.
pub fn alert_json(alert: &Alert, ends_at: Option<i64>) -> Value {
    json!({
        "status": alert.status.as_str(),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": rfc3339(alert.starts_at_ms.unwrap_or(alert.active_since_ms)),
        "endsAt": ends_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
        "generatorURL": alert.annotations.get("ui_url").cloned().unwrap_or_default(),
        "fingerprint": alert.fingerprint,
    })
}

/// Returns the body for a webhook receiver, or `None` when nothing is left to send.
pub(crate) fn body(
    notification: &Notification,
    receiver: &WebhookReceiverConfig,
    external_url: &str,
) -> Option<Value> {
    let mut n = notification.clone();
    if !receiver.send_resolved {
        n.alerts.retain(|a| a.status != AlertStatus::Resolved);
    }
    if n.alerts.is_empty() {
        return None;
    }
    let status = if n.alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        "firing"
    } else {
        "resolved"
    };
    let common_labels = n.common_labels();
    let common_annotations = n.common_annotations();
    let total = n.alerts.len();
    if receiver.max_alerts > 0 {
        n.alerts.truncate(receiver.max_alerts);
    }
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            let ends = (a.status == AlertStatus::Resolved)
                .then_some(a.ends_at_ms)
                .flatten();
            alert_json(a, ends)
        })
        .collect();
    Some(json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": total - n.alerts.len(),
        "status": status,
        "receiver": receiver.name,
        "groupLabels": n.group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": alerts,
    }))
}
