//! Forwarding to an Alertmanager: `POST <url>/api/v2/alerts` with an array of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`.
//!
//! Alertmanager resolves an alert it stops hearing about at its `endsAt`, so firing alerts are
//! sent with `endsAt` = send time + 4 x `resend_interval` and re-sent every interval (what
//! Prometheus does); resolved alerts carry the time they resolved.

use serde_json::{Value, json};

use crate::alert::config::{AlertmanagerReceiverConfig, millis};
use crate::alert::model::{AlertStatus, Notification, rfc3339};

/// Returns the alert array, or `None` for an empty notification.
pub(crate) fn body(
    notification: &Notification,
    receiver: &AlertmanagerReceiverConfig,
) -> Option<Value> {
    if notification.alerts.is_empty() {
        return None;
    }
    let valid_for = millis(receiver.resend_interval).saturating_mul(4);
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|a| {
            let ends = match a.status {
                AlertStatus::Resolved => a.ends_at_ms.unwrap_or(notification.created_ms),
                _ => notification.created_ms.saturating_add(valid_for),
            };
            json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms.unwrap_or(a.active_since_ms)),
                "endsAt": rfc3339(ends),
                "generatorURL": a.annotations.get("ui_url").cloned().unwrap_or_default(),
            })
        })
        .collect();
    Some(Value::Array(alerts))
}
