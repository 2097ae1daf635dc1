//! Alert groups and the Alertmanager notification decision.
//!
//! A group is created when its first alert fires and flushes `group_wait` later, then every
//! `group_interval`. At a flush it notifies when (as Alertmanager's dedup stage does):
//! it never notified and something fires; an alert fires that the last notification did not
//! include; an alert the last notification reported firing has resolved; or
//! `repeat_interval` passed since the last notification while something fires.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::config::ValidRoute;
use super::model::Labels;

/// One aggregation group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlertGroup {
    /// Values of the `group_by` labels.
    pub(crate) labels: Labels,
    /// Fingerprints of the firing and resolved-but-not-flushed alerts in the group.
    pub(crate) alerts: BTreeSet<String>,
    /// Next flush, Unix ms.
    pub(crate) next_flush_ms: i64,
    /// Last notification, Unix ms.
    pub(crate) last_notified_ms: Option<i64>,
    /// Alerts reported firing by the last notification.
    pub(crate) notified_firing: BTreeSet<String>,
}

impl AlertGroup {
    pub(crate) fn new(labels: Labels, now_ms: i64, route: &ValidRoute) -> Self {
        Self {
            labels,
            alerts: BTreeSet::new(),
            next_flush_ms: now_ms.saturating_add(route.group_wait_ms),
            last_notified_ms: None,
            notified_firing: BTreeSet::new(),
        }
    }

    /// Returns true when a flush with these firing and resolved alerts must notify.
    /// `resolved` holds only alerts the group reported firing before.
    pub(crate) fn needs_notification(
        &self,
        firing: &BTreeSet<String>,
        resolved: &BTreeSet<String>,
        now_ms: i64,
        repeat_interval_ms: i64,
    ) -> bool {
        if firing.is_empty() && resolved.is_empty() {
            return false;
        }
        let Some(last) = self.last_notified_ms else {
            return !firing.is_empty();
        };
        if !firing.is_subset(&self.notified_firing) {
            return true;
        }
        if !resolved.is_empty() {
            return true;
        }
        !firing.is_empty() && now_ms.saturating_sub(last) >= repeat_interval_ms
    }

    /// Schedules the flush after one at `now_ms`, on the group's own cadence.
    pub(crate) fn schedule_next(&mut self, now_ms: i64, group_interval_ms: i64) {
        self.next_flush_ms = self.next_flush_ms.saturating_add(group_interval_ms);
        if self.next_flush_ms <= now_ms {
            self.next_flush_ms = now_ms.saturating_add(group_interval_ms);
        }
    }
}

/// Returns the group labels of an alert: its values of the `group_by` labels it has, or all
/// its labels for `group_by = ["..."]`.
pub(crate) fn group_labels(labels: &Labels, route: &ValidRoute) -> Labels {
    match &route.group_by {
        None => labels.clone(),
        Some(names) => names
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
    }
}

/// Returns the Alertmanager-style group key, `{}:{alertname="X",stage="y"}`.
pub(crate) fn group_key(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{}}:{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn route() -> ValidRoute {
        ValidRoute {
            group_by: Some(vec!["alertname".into(), "stage".into()]),
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            repeat_interval_ms: 3_600_000,
        }
    }

    #[test]
    fn decides_like_alertmanager() {
        let mut g = AlertGroup::new(Labels::new(), 0, &route());
        assert_eq!(g.next_flush_ms, 30_000);
        // Never notified: only firing alerts make a notification.
        assert!(!g.needs_notification(&set(&[]), &set(&[]), 0, 10));
        assert!(g.needs_notification(&set(&["a"]), &set(&[]), 0, 10));
        g.last_notified_ms = Some(0);
        g.notified_firing = set(&["a", "b"]);
        // A subset of what was notified, nothing resolved, before the repeat: quiet.
        assert!(!g.needs_notification(&set(&["a"]), &set(&[]), 5, 10));
        // A new firing alert.
        assert!(g.needs_notification(&set(&["a", "c"]), &set(&[]), 5, 10));
        // A notified alert resolved.
        assert!(g.needs_notification(&set(&["a"]), &set(&["b"]), 5, 10));
        // Repeat.
        assert!(g.needs_notification(&set(&["a"]), &set(&[]), 10, 10));
        assert!(!g.needs_notification(&set(&[]), &set(&[]), 10, 10));
    }

    #[test]
    fn keeps_its_cadence() {
        let mut g = AlertGroup::new(Labels::new(), 0, &route());
        g.schedule_next(31_000, 300_000);
        assert_eq!(g.next_flush_ms, 330_000);
        g.schedule_next(10_000_000, 300_000);
        assert_eq!(g.next_flush_ms, 10_300_000);
    }

    #[test]
    fn builds_group_labels_and_keys() {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "X".into());
        labels.insert("stage".into(), "svc/a".into());
        labels.insert("series".into(), "k".into());
        let g = group_labels(&labels, &route());
        assert_eq!(g.len(), 2);
        assert_eq!(group_key(&g), "{}:{alertname=\"X\",stage=\"svc/a\"}");
        let all = ValidRoute {
            group_by: None,
            ..route()
        };
        assert_eq!(group_labels(&labels, &all), labels);
    }
}
