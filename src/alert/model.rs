//! Alerts, notifications and history events: what the engine produces, stores and serves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels of an alert (sorted by name). `alertname` is always present.
pub type Labels = BTreeMap<String, String>;

/// Returns the fingerprint of a label set: 16 lowercase hex digits of FNV-1a 64 over the sorted
/// `name=value` pairs. Stable across versions and processes (it keys persisted state).
pub fn fingerprint(labels: &Labels) -> String {
    let mut hash = Fnv64::default();
    for (name, value) in labels {
        hash.write(name.as_bytes());
        hash.write(&[0xff]);
        hash.write(value.as_bytes());
        hash.write(&[0xfe]);
    }
    format!("{:016x}", hash.0)
}

/// FNV-1a, 64 bits.
pub(crate) struct Fnv64(pub(crate) u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds, but not yet for the rule's `for`.
    Pending,
    /// The condition held for `for` (or cleared less than `resolve_hold_down` ago).
    Firing,
    /// The condition cleared for `resolve_hold_down`.
    Resolved,
}

impl AlertStatus {
    /// Returns `pending`, `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert instance: a rule's condition for one label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// [`fingerprint`] of `labels`: the alert's identity.
    pub fingerprint: String,
    /// Name of the rule that made it.
    pub rule: String,
    /// Identifying labels (`alertname`, `severity`, the rule's labels, instance labels such as
    /// `stage`, `series`, `cluster`, `group`, `probe`, `slo`, `window`).
    pub labels: Labels,
    /// Non-identifying text: `summary` (what is wrong, in one line a person can act on),
    /// `description` (the evidence), `ui_url` (link into the web UI), `runbook_url` when set.
    pub annotations: Labels,
    /// Lifecycle status.
    pub status: AlertStatus,
    /// When the condition was first seen true (pending since), Unix ms.
    pub active_since_ms: i64,
    /// When the alert started firing, Unix ms.
    pub starts_at_ms: Option<i64>,
    /// When the alert resolved (the time its condition cleared), Unix ms.
    pub ends_at_ms: Option<i64>,
    /// While firing: when the condition cleared (the alert resolves `resolve_hold_down` later
    /// unless the condition returns).
    pub clearing_since_ms: Option<i64>,
    /// Value behind the condition at the last evaluation (series value, burn rate, failures).
    pub value: Option<f64>,
    /// How many times the condition cleared and returned within the hold-down while firing.
    pub flaps: u32,
    /// When the alert was last part of a delivered-to-outbox group notification, Unix ms.
    pub last_notified_ms: Option<i64>,
    /// Incident the alert belongs to.
    pub incident_id: Option<String>,
    /// Ids of the active silences that mute it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of the firing alerts that inhibit it.
    pub inhibited_by: Vec<String>,
}

impl Alert {
    /// Returns the `alertname` label (the rule name).
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// Returns true when a silence or an inhibition keeps it out of notifications.
    pub fn is_muted(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }
}

/// What a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A flush of an alert group, for webhook and Slack receivers.
    Group,
    /// The current alerts, for Alertmanager receivers (which group on their side); re-sent
    /// every `resend_interval` while anything fires so Alertmanager does not time them out.
    Forward,
}

/// A message to receivers: an alert group's current firing alerts and newly resolved ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique id (idempotency key), e.g. `g-<group fingerprint>-<seq>`.
    pub id: String,
    /// Group flush or Alertmanager forward.
    pub kind: NotificationKind,
    /// Receivers it goes to (may be empty: then it is only recorded in history).
    pub receivers: Vec<String>,
    /// Alertmanager-style group key, `{}:{alertname="X",stage="y"}`.
    pub group_key: String,
    /// Values of the `group_by` labels.
    pub group_labels: Labels,
    /// `firing` when any alert fires, `resolved` when all included alerts resolved.
    pub status: AlertStatus,
    /// Firing alerts then resolved ones, each as of the notification time.
    pub alerts: Vec<Alert>,
    /// When the engine made it, Unix ms.
    pub created_ms: i64,
}

impl Notification {
    /// Returns the labels every alert shares (name and value).
    pub fn common_labels(&self) -> Labels {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Returns the annotations every alert shares.
    pub fn common_annotations(&self) -> Labels {
        common(self.alerts.iter().map(|a| &a.annotations))
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::new();
    };
    let mut out = first.clone();
    for set in sets {
        out.retain(|k, v| set.get(k) == Some(v));
    }
    out
}

/// One line of alert history: a lifecycle change or a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When, Unix ms.
    pub timestamp_ms: i64,
    /// `pending`, `firing`, `flapped`, `resolved`, `silenced`, `unsilenced`, `inhibited`,
    /// `uninhibited`, `notified`.
    pub event: String,
    /// Alert fingerprint (empty for a notification event).
    pub fingerprint: String,
    /// Rule name, or the group key for a notification event.
    pub rule: String,
    /// Alert labels, or group labels for a notification event.
    pub labels: Labels,
    /// Extra details: summary, value, notification id and receivers, muting ids.
    pub detail: serde_json::Value,
}

/// Renders `ms` as an RFC 3339 UTC timestamp with milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters are kept).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_order_independent() {
        let mut a = Labels::new();
        a.insert("alertname".into(), "X".into());
        a.insert("stage".into(), "svc/a".into());
        let mut b = Labels::new();
        b.insert("stage".into(), "svc/a".into());
        b.insert("alertname".into(), "X".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        b.insert("stage".into(), "svc/b".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // Moving a character between name and value changes the fingerprint.
        let mut c = Labels::new();
        c.insert("ab".into(), "c".into());
        let mut d = Labels::new();
        d.insert("a".into(), "bc".into());
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }

    #[test]
    fn renders_times_and_query_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(
            encode_query_value("svc/a|span.count|"),
            "svc%2Fa%7Cspan.count%7C"
        );
    }
}
