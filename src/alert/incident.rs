//! Correlated incidents: firing alerts that share a correlation label value (the stage, by
//! default) within a time window, gathered with all their evidence.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::config::ValidIncidents;
use super::model::{Alert, AlertStatus, Fnv64, Labels};

/// Whether an incident is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    /// Some alert fires, or the last one resolved less than the window ago.
    Open,
    /// Every alert resolved and the window passed.
    Closed,
}

/// One alert's part in an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvidence {
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Rule name.
    pub alertname: String,
    /// Alert labels.
    pub labels: Labels,
    /// Alert summary.
    pub summary: String,
    /// Alert description (the evidence).
    pub description: String,
    /// Link into the UI.
    pub ui_url: String,
    /// Latest value behind the alert.
    pub value: Option<f64>,
    /// Alert status.
    pub status: AlertStatus,
    /// When it started firing, Unix ms.
    pub starts_at_ms: Option<i64>,
    /// When it resolved, Unix ms.
    pub ends_at_ms: Option<i64>,
}

/// Alerts of one correlation key close in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Id (`i-` and 16 hex digits).
    pub id: String,
    /// Correlation label and value, e.g. `stage=svc/orders`.
    pub key: String,
    /// Open or closed.
    pub status: IncidentStatus,
    /// When the first alert fired, Unix ms.
    pub opened_ms: i64,
    /// Latest alert firing or resolving, Unix ms.
    pub last_activity_ms: i64,
    /// When it closed, Unix ms.
    pub closed_ms: Option<i64>,
    /// `key: alert names`.
    pub title: String,
    /// Every alert that joined, in order of joining.
    pub evidence: Vec<IncidentEvidence>,
}

impl Incident {
    fn retitle(&mut self) {
        let mut names: Vec<&str> = self.evidence.iter().map(|e| e.alertname.as_str()).collect();
        names.dedup();
        let mut seen = Vec::new();
        for n in names {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        self.title = format!("{}: {}", self.key, seen.join(", "));
    }
}

fn evidence(alert: &Alert) -> IncidentEvidence {
    let annotation = |k: &str| alert.annotations.get(k).cloned().unwrap_or_default();
    IncidentEvidence {
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.name().to_owned(),
        labels: alert.labels.clone(),
        summary: annotation("summary"),
        description: annotation("description"),
        ui_url: annotation("ui_url"),
        value: alert.value,
        status: alert.status,
        starts_at_ms: alert.starts_at_ms,
        ends_at_ms: alert.ends_at_ms,
    }
}

/// Open incidents and the most recent closed ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Incidents {
    pub(crate) open: Vec<Incident>,
    pub(crate) closed: VecDeque<Incident>,
}

impl Incidents {
    /// Puts a newly firing alert into an incident (an open one of its key whose last activity
    /// is within the window, or a new one). Returns the incident id, or `None` when the alert
    /// has none of the correlation labels.
    pub(crate) fn attach(
        &mut self,
        alert: &Alert,
        now_ms: i64,
        config: &ValidIncidents,
    ) -> Option<String> {
        let key = config.correlate_by.iter().find_map(|l| {
            alert
                .labels
                .get(l)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{l}={v}"))
        })?;
        let position = self.open.iter().position(|i| {
            i.key == key && now_ms.saturating_sub(i.last_activity_ms) <= config.window_ms
        });
        let incident = match position {
            Some(p) => &mut self.open[p],
            None => {
                let mut hash = Fnv64::default();
                hash.write(key.as_bytes());
                hash.write(&now_ms.to_le_bytes());
                self.open.push(Incident {
                    id: format!("i-{:016x}", hash.0),
                    key,
                    status: IncidentStatus::Open,
                    opened_ms: now_ms,
                    last_activity_ms: now_ms,
                    closed_ms: None,
                    title: String::new(),
                    evidence: Vec::new(),
                });
                let last = self.open.len() - 1;
                &mut self.open[last]
            }
        };
        incident.last_activity_ms = now_ms;
        match incident
            .evidence
            .iter_mut()
            .find(|e| e.fingerprint == alert.fingerprint)
        {
            Some(e) => *e = evidence(alert),
            None => incident.evidence.push(evidence(alert)),
        }
        incident.retitle();
        Some(incident.id.clone())
    }

    /// Refreshes an alert's evidence (status, value, summary); a resolution counts as
    /// activity. Returns true when something changed.
    pub(crate) fn update(&mut self, alert: &Alert, now_ms: i64) -> bool {
        let Some(id) = &alert.incident_id else {
            return false;
        };
        let Some(incident) = self.open.iter_mut().find(|i| &i.id == id) else {
            return false;
        };
        let Some(e) = incident
            .evidence
            .iter_mut()
            .find(|e| e.fingerprint == alert.fingerprint)
        else {
            return false;
        };
        let fresh = evidence(alert);
        if *e == fresh {
            return false;
        }
        if fresh.status == AlertStatus::Resolved && e.status != AlertStatus::Resolved {
            incident.last_activity_ms = now_ms;
        }
        *e = fresh;
        true
    }

    /// Closes incidents whose alerts all resolved at least the window ago. Returns the ids
    /// closed.
    pub(crate) fn close_due(&mut self, now_ms: i64, config: &ValidIncidents) -> Vec<String> {
        let mut closed = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            let incident = &self.open[i];
            let all_resolved = incident
                .evidence
                .iter()
                .all(|e| e.status == AlertStatus::Resolved);
            if all_resolved && now_ms.saturating_sub(incident.last_activity_ms) >= config.window_ms
            {
                let mut incident = self.open.remove(i);
                incident.status = IncidentStatus::Closed;
                incident.closed_ms = Some(now_ms);
                closed.push(incident.id.clone());
                self.closed.push_back(incident);
                while self.closed.len() > config.max_closed {
                    self.closed.pop_front();
                }
            } else {
                i += 1;
            }
        }
        closed
    }

    /// Returns every incident, open ones first (newest first), then closed (newest first).
    pub(crate) fn list(&self) -> Vec<Incident> {
        let mut out: Vec<Incident> = self.open.iter().rev().cloned().collect();
        out.extend(self.closed.iter().rev().cloned());
        out
    }
}
