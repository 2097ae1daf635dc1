//! The alert engine: synchronous and deterministic. Inputs go in through `observe*`, time is
//! an argument of [`AlertEngine::evaluate`], and notifications come out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::AlertError;
use super::config::{ReceiverConfig, ValidAlertConfig, millis};
use super::group::{AlertGroup, group_key, group_labels};
use super::incident::{Incident, Incidents};
use super::input::{
    AlertEvent, AnomalyInput, LagVerdictInput, PointInput, ProbeResultInput, SpanSliInput,
};
use super::matcher::all_match;
use super::model::{
    Alert, AlertStatus, HistoryEvent, Labels, Notification, NotificationKind, fingerprint,
};
use super::rule::{Condition, RuleRuntime, RuleState};
use super::silence::{Silence, SilenceRequest, SilenceState};
use pipewarden_collector::StageWindow;

/// What an Alertmanager receiver was last sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ForwardState {
    pub(crate) last_sent_ms: Option<i64>,
    /// Alerts last sent as firing, as they were sent.
    pub(crate) firing: BTreeMap<String, Alert>,
}

/// Everything the engine needs to carry on after a restart (rule states aside).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EngineCore {
    pub(crate) groups: BTreeMap<String, AlertGroup>,
    pub(crate) forwards: BTreeMap<String, ForwardState>,
    pub(crate) notification_seq: u64,
    pub(crate) silence_seq: u64,
}

/// A full copy of the engine's state, as persisted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EngineSnapshot {
    pub(crate) core: EngineCore,
    pub(crate) alerts: Vec<Alert>,
    pub(crate) silences: Vec<Silence>,
    pub(crate) incidents: Incidents,
    pub(crate) rule_states: BTreeMap<String, RuleState>,
}

/// Rules, alerts, groups, silences and incidents, evaluated at times given by the caller.
#[derive(Debug)]
pub struct AlertEngine {
    config: ValidAlertConfig,
    rules: Vec<RuleRuntime>,
    alerts: BTreeMap<String, Alert>,
    silences: BTreeMap<String, Silence>,
    incidents: Incidents,
    core: EngineCore,
    history: Vec<HistoryEvent>,
    dirty: bool,
    webhook_receivers: Vec<String>,
}

impl AlertEngine {
    /// Creates an engine with no state.
    pub fn new(config: ValidAlertConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|r| RuleRuntime::new(r.clone(), config.max_series_per_rule))
            .collect();
        let webhook_receivers = config
            .receivers
            .iter()
            .filter(|r| !matches!(r, ReceiverConfig::Alertmanager(_)))
            .map(|r| r.name().to_owned())
            .collect();
        Self {
            config,
            rules,
            alerts: BTreeMap::new(),
            silences: BTreeMap::new(),
            incidents: Incidents::default(),
            core: EngineCore::default(),
            history: Vec::new(),
            dirty: false,
            webhook_receivers,
        }
    }

    /// Creates an engine carrying on from a persisted snapshot. Rule states whose kind no
    /// longer fits the rule of the same name are dropped; alerts of rules that no longer exist
    /// resolve at the next evaluation.
    pub(crate) fn restore(config: ValidAlertConfig, snapshot: EngineSnapshot) -> Self {
        let mut engine = Self::new(config);
        let mut states = snapshot.rule_states;
        for rule in &mut engine.rules {
            if let Some(state) = states.remove(&rule.rule.name) {
                rule.restore(state);
            }
        }
        engine.alerts = snapshot
            .alerts
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();
        engine.silences = snapshot
            .silences
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        engine.incidents = snapshot.incidents;
        engine.core = snapshot.core;
        engine
    }

    /// Feeds one input to every rule.
    pub fn observe(&mut self, event: &AlertEvent) {
        match event {
            AlertEvent::Point(p) => self.observe_point(p),
            AlertEvent::Anomaly(a) => self.observe_anomaly(a),
            AlertEvent::Lag(v) => self.observe_lag(v),
            AlertEvent::Probe(r) => self.observe_probe(r),
            AlertEvent::SpanSli(s) => self.observe_span_sli(s),
            AlertEvent::StageWindow(w) => self.observe_stage_window(w),
        }
    }

    /// Feeds a series point.
    pub fn observe_point(&mut self, point: &PointInput) {
        self.rules.iter_mut().for_each(|r| r.observe_point(point));
    }

    /// Feeds an anomaly.
    pub fn observe_anomaly(&mut self, anomaly: &AnomalyInput) {
        self.rules
            .iter_mut()
            .for_each(|r| r.observe_anomaly(anomaly));
    }

    /// Feeds a consumer group verdict.
    pub fn observe_lag(&mut self, verdict: &LagVerdictInput) {
        self.rules.iter_mut().for_each(|r| r.observe_lag(verdict));
    }

    /// Feeds a probe run.
    pub fn observe_probe(&mut self, result: &ProbeResultInput) {
        self.rules.iter_mut().for_each(|r| r.observe_probe(result));
    }

    /// Feeds span SLI counts.
    pub fn observe_span_sli(&mut self, sli: &SpanSliInput) {
        self.rules.iter_mut().for_each(|r| r.observe_span_sli(sli));
    }

    /// Feeds a closed stage window (span success and latency SLIs).
    pub fn observe_stage_window(&mut self, window: &StageWindow) {
        self.rules
            .iter_mut()
            .for_each(|r| r.observe_stage_window(window));
    }

    /// Evaluates every rule at `now_ms`, moves alerts through their lifecycle, applies
    /// silences and inhibitions, updates incidents, and returns the notifications due.
    pub fn evaluate(&mut self, now_ms: i64) -> Vec<Notification> {
        let mut active = BTreeSet::new();
        for index in 0..self.rules.len() {
            let stale_after_ms = self.config.stale_after_ms;
            let conditions = self.rules[index].conditions(now_ms, stale_after_ms);
            for condition in conditions {
                let fp = self.on_active(index, condition, now_ms);
                active.insert(fp);
            }
        }
        let inactive: Vec<String> = self
            .alerts
            .keys()
            .filter(|fp| !active.contains(*fp))
            .cloned()
            .collect();
        for fp in inactive {
            self.on_inactive(&fp, now_ms);
        }
        self.update_muting(now_ms);
        if !self
            .incidents
            .close_due(now_ms, &self.config.incidents)
            .is_empty()
        {
            self.dirty = true;
        }
        let mut out = self.forward(now_ms);
        out.extend(self.flush_groups(now_ms));
        out
    }

    fn render(&self, index: usize, condition: &Condition) -> (Labels, Labels) {
        let rule = &self.rules[index].rule;
        let mut labels = rule.labels.clone();
        // Instance labels win, so distinct instances never collapse into one alert.
        labels.extend(condition.labels.clone());
        let mut annotations = Labels::new();
        let summary = match &rule.summary {
            Some(template) => render_template(template, &labels, condition.value),
            None => condition.summary.clone(),
        };
        annotations.insert("summary".to_owned(), summary);
        annotations.insert("description".to_owned(), condition.description.clone());
        annotations.insert(
            "ui_url".to_owned(),
            format!("{}{}", self.config.external_url, condition.ui_path),
        );
        if let Some(url) = &rule.runbook_url {
            annotations.insert("runbook_url".to_owned(), url.clone());
        }
        (labels, annotations)
    }

    fn on_active(&mut self, index: usize, condition: Condition, now_ms: i64) -> String {
        let (labels, annotations) = self.render(index, &condition);
        let fp = fingerprint(&labels);
        let rule_name = self.rules[index].rule.name.clone();
        let for_ms = self.rules[index].rule.for_ms;
        let existing = self.alerts.get(&fp).map(|a| a.status);
        match existing {
            None | Some(AlertStatus::Resolved) => {
                let alert = Alert {
                    fingerprint: fp.clone(),
                    rule: rule_name,
                    labels,
                    annotations: annotations.clone(),
                    status: AlertStatus::Pending,
                    active_since_ms: now_ms,
                    starts_at_ms: None,
                    ends_at_ms: None,
                    clearing_since_ms: None,
                    value: condition.value,
                    flaps: 0,
                    last_notified_ms: None,
                    incident_id: None,
                    silenced_by: Vec::new(),
                    inhibited_by: Vec::new(),
                };
                self.record(&alert, "pending", now_ms, serde_json::json!({}));
                self.alerts.insert(fp.clone(), alert);
                self.dirty = true;
            }
            Some(_) => {}
        }
        let Some(alert) = self.alerts.get_mut(&fp) else {
            return fp;
        };
        let mut annotations = annotations;
        if let Some(id) = &alert.incident_id {
            annotations.insert("incident".to_owned(), id.clone());
        }
        alert.annotations = annotations;
        alert.value = condition.value;
        let mut flapped = false;
        let mut fired = false;
        match alert.status {
            AlertStatus::Pending if now_ms.saturating_sub(alert.active_since_ms) >= for_ms => {
                alert.status = AlertStatus::Firing;
                alert.starts_at_ms = Some(now_ms);
                fired = true;
            }
            AlertStatus::Firing if alert.clearing_since_ms.is_some() => {
                alert.clearing_since_ms = None;
                alert.flaps = alert.flaps.saturating_add(1);
                flapped = true;
            }
            _ => {}
        }
        let snapshot = alert.clone();
        if fired {
            self.dirty = true;
            let id = self
                .incidents
                .attach(&snapshot, now_ms, &self.config.incidents);
            if let (Some(id), Some(alert)) = (id, self.alerts.get_mut(&fp)) {
                alert.incident_id = Some(id.clone());
                alert.annotations.insert("incident".to_owned(), id.clone());
                let detail = serde_json::json!({
                    "summary": alert.annotations.get("summary"),
                    "value": alert.value,
                    "incident": id,
                });
                let alert = alert.clone();
                self.incidents.update(&alert, now_ms);
                self.record(&alert, "firing", now_ms, detail);
            } else {
                let detail = serde_json::json!({
                    "summary": snapshot.annotations.get("summary"),
                    "value": snapshot.value,
                });
                self.record(&snapshot, "firing", now_ms, detail);
            }
        } else {
            if flapped {
                self.dirty = true;
                let detail = serde_json::json!({ "flaps": snapshot.flaps });
                self.record(&snapshot, "flapped", now_ms, detail);
            }
            if self.incidents.update(&snapshot, now_ms) {
                self.dirty = true;
            }
        }
        fp
    }

    fn on_inactive(&mut self, fp: &str, now_ms: i64) {
        let hold_down_ms = self.config.resolve_hold_down_ms;
        let Some(alert) = self.alerts.get_mut(fp) else {
            return;
        };
        match alert.status {
            AlertStatus::Pending => {
                self.alerts.remove(fp);
                self.dirty = true;
            }
            AlertStatus::Firing => {
                let since = *alert.clearing_since_ms.get_or_insert(now_ms);
                self.dirty = true;
                if now_ms.saturating_sub(since) >= hold_down_ms {
                    alert.status = AlertStatus::Resolved;
                    alert.ends_at_ms = Some(since);
                    alert.clearing_since_ms = None;
                    let snapshot = alert.clone();
                    self.incidents.update(&snapshot, now_ms);
                    let detail =
                        serde_json::json!({ "summary": snapshot.annotations.get("summary") });
                    self.record(&snapshot, "resolved", now_ms, detail);
                }
            }
            AlertStatus::Resolved => {}
        }
    }

    fn update_muting(&mut self, now_ms: i64) {
        let firing: Vec<(String, Labels)> = self
            .alerts
            .values()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| (a.fingerprint.clone(), a.labels.clone()))
            .collect();
        let mut events = Vec::new();
        for alert in self.alerts.values_mut() {
            if alert.status == AlertStatus::Resolved {
                continue;
            }
            let silenced: Vec<String> = self
                .silences
                .values()
                .filter(|s| s.mutes(&alert.labels, now_ms))
                .map(|s| s.id.clone())
                .collect();
            let mut inhibited = BTreeSet::new();
            for rule in &self.config.inhibit_rules {
                if !all_match(&rule.target, &alert.labels) {
                    continue;
                }
                for (source_fp, source_labels) in &firing {
                    if *source_fp == alert.fingerprint || !all_match(&rule.source, source_labels) {
                        continue;
                    }
                    let equal = rule
                        .equal
                        .iter()
                        .all(|l| source_labels.get(l) == alert.labels.get(l));
                    if equal {
                        inhibited.insert(source_fp.clone());
                    }
                }
            }
            let inhibited: Vec<String> = inhibited.into_iter().collect();
            if alert.status == AlertStatus::Firing {
                if alert.silenced_by.is_empty() != silenced.is_empty() {
                    let event = if silenced.is_empty() {
                        "unsilenced"
                    } else {
                        "silenced"
                    };
                    events.push((
                        alert.clone(),
                        event,
                        serde_json::json!({ "silences": silenced }),
                    ));
                }
                if alert.inhibited_by.is_empty() != inhibited.is_empty() {
                    let event = if inhibited.is_empty() {
                        "uninhibited"
                    } else {
                        "inhibited"
                    };
                    events.push((alert.clone(), event, serde_json::json!({ "by": inhibited })));
                }
            }
            if alert.silenced_by != silenced || alert.inhibited_by != inhibited {
                alert.silenced_by = silenced;
                alert.inhibited_by = inhibited;
                self.dirty = true;
            }
        }
        for (alert, event, detail) in events {
            self.record(&alert, event, now_ms, detail);
        }
    }

    fn forward(&mut self, now_ms: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        let receivers: Vec<(String, i64)> = self
            .config
            .receivers
            .iter()
            .filter_map(|r| match r {
                ReceiverConfig::Alertmanager(am) => {
                    Some((am.name.clone(), millis(am.resend_interval)))
                }
                _ => None,
            })
            .collect();
        for (name, resend_ms) in receivers {
            let firing: BTreeMap<String, Alert> = self
                .alerts
                .values()
                .filter(|a| a.status == AlertStatus::Firing && !a.is_muted())
                .map(|a| (a.fingerprint.clone(), a.clone()))
                .collect();
            let state = self.core.forwards.entry(name.clone()).or_default();
            let changed = firing.keys().ne(state.firing.keys());
            let due = !firing.is_empty()
                && state
                    .last_sent_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= resend_ms);
            if !changed && !due {
                continue;
            }
            let mut alerts: Vec<Alert> = firing.values().cloned().collect();
            for (fp, sent) in &state.firing {
                if firing.contains_key(fp) {
                    continue;
                }
                match self.alerts.get(fp) {
                    // Muted now: stop re-sending and let Alertmanager time it out.
                    Some(a) if a.status == AlertStatus::Firing => {}
                    Some(a) if a.status == AlertStatus::Resolved => alerts.push(a.clone()),
                    _ => {
                        let mut gone = sent.clone();
                        gone.status = AlertStatus::Resolved;
                        gone.ends_at_ms = Some(now_ms);
                        alerts.push(gone);
                    }
                }
            }
            state.firing = firing;
            state.last_sent_ms = Some(now_ms);
            self.dirty = true;
            if alerts.is_empty() {
                continue;
            }
            self.core.notification_seq += 1;
            let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            };
            out.push(Notification {
                id: format!("f-{}-{}", now_ms, self.core.notification_seq),
                kind: NotificationKind::Forward,
                receivers: vec![name],
                group_key: "{}:{}".to_owned(),
                group_labels: Labels::new(),
                status,
                alerts,
                created_ms: now_ms,
            });
        }
        out
    }

    fn flush_groups(&mut self, now_ms: i64) -> Vec<Notification> {
        let route = self.config.route.clone();
        // Put every firing or resolved alert into its group.
        for alert in self.alerts.values() {
            if alert.status == AlertStatus::Pending {
                continue;
            }
            let labels = group_labels(&alert.labels, &route);
            let key = fingerprint(&labels);
            let group = self.core.groups.entry(key).or_insert_with(|| {
                self.dirty = true;
                AlertGroup::new(labels, now_ms, &route)
            });
            if group.alerts.insert(alert.fingerprint.clone()) {
                self.dirty = true;
            }
        }
        let mut out = Vec::new();
        let due: Vec<String> = self
            .core
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(mut group) = self.core.groups.remove(&key) else {
                continue;
            };
            self.dirty = true;
            let mut firing = BTreeSet::new();
            let mut resolved = BTreeSet::new();
            for fp in &group.alerts {
                match self.alerts.get(fp) {
                    Some(a) if a.status == AlertStatus::Firing && !a.is_muted() => {
                        firing.insert(fp.clone());
                    }
                    Some(a)
                        if a.status == AlertStatus::Resolved
                            && group.notified_firing.contains(fp) =>
                    {
                        resolved.insert(fp.clone());
                    }
                    _ => {}
                }
            }
            if group.needs_notification(&firing, &resolved, now_ms, route.repeat_interval_ms) {
                out.push(self.group_notification(&key, &group, &firing, &resolved, now_ms));
                group.notified_firing = firing;
                group.last_notified_ms = Some(now_ms);
            }
            // Resolved alerts leave the group (and the engine) at the flush; pending ones (a
            // resolved alert that came back) rejoin when they fire.
            let members: Vec<String> = group.alerts.iter().cloned().collect();
            for fp in members {
                match self.alerts.get(&fp).map(|a| a.status) {
                    Some(AlertStatus::Firing) => {}
                    Some(AlertStatus::Resolved) => {
                        self.alerts.remove(&fp);
                        group.alerts.remove(&fp);
                    }
                    _ => {
                        group.alerts.remove(&fp);
                    }
                }
            }
            group.schedule_next(now_ms, route.group_interval_ms);
            if !group.alerts.is_empty() {
                self.core.groups.insert(key, group);
            }
        }
        out
    }

    fn group_notification(
        &mut self,
        key: &str,
        group: &AlertGroup,
        firing: &BTreeSet<String>,
        resolved: &BTreeSet<String>,
        now_ms: i64,
    ) -> Notification {
        self.core.notification_seq += 1;
        let mut alerts = Vec::with_capacity(firing.len() + resolved.len());
        for fp in firing.iter().chain(resolved.iter()) {
            if let Some(alert) = self.alerts.get_mut(fp) {
                alert.last_notified_ms = Some(now_ms);
                alerts.push(alert.clone());
            }
        }
        // Firing first, oldest first; then resolved.
        alerts.sort_by_key(|a| {
            (
                a.status == AlertStatus::Resolved,
                a.starts_at_ms.unwrap_or(i64::MAX),
                a.fingerprint.clone(),
            )
        });
        let status = if firing.is_empty() {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let notification = Notification {
            id: format!("g-{key}-{}", self.core.notification_seq),
            kind: NotificationKind::Group,
            receivers: self.webhook_receivers.clone(),
            group_key: group_key(&group.labels),
            group_labels: group.labels.clone(),
            status,
            alerts,
            created_ms: now_ms,
        };
        self.history.push(HistoryEvent {
            timestamp_ms: now_ms,
            event: "notified".to_owned(),
            fingerprint: String::new(),
            rule: notification.group_key.clone(),
            labels: notification.group_labels.clone(),
            detail: serde_json::json!({
                "notification": notification.id,
                "status": status.as_str(),
                "receivers": notification.receivers,
                "firing": firing,
                "resolved": resolved,
            }),
        });
        notification
    }

    fn record(&mut self, alert: &Alert, event: &str, now_ms: i64, detail: serde_json::Value) {
        self.history.push(HistoryEvent {
            timestamp_ms: now_ms,
            event: event.to_owned(),
            fingerprint: alert.fingerprint.clone(),
            rule: alert.rule.clone(),
            labels: alert.labels.clone(),
            detail,
        });
    }

    /// Returns every pending, firing and not yet flushed resolved alert, firing first.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self.alerts.values().cloned().collect();
        alerts.sort_by_key(|a| {
            let rank = match a.status {
                AlertStatus::Firing => 0,
                AlertStatus::Pending => 1,
                AlertStatus::Resolved => 2,
            };
            (rank, a.active_since_ms, a.fingerprint.clone())
        });
        alerts
    }

    /// Returns the incidents, open first.
    pub fn incidents(&self) -> Vec<Incident> {
        self.incidents.list()
    }

    /// Returns every silence with its state at `now_ms`, newest first.
    pub fn silences(&self, now_ms: i64) -> Vec<(Silence, SilenceState)> {
        let mut out: Vec<(Silence, SilenceState)> = self
            .silences
            .values()
            .map(|s| (s.clone(), s.state(now_ms)))
            .collect();
        out.sort_by_key(|(s, _)| std::cmp::Reverse((s.created_at_ms, s.id.clone())));
        out
    }

    /// Creates a silence; it applies from the next evaluation.
    ///
    /// # Errors
    /// [`AlertError::BadSilence`] when the request is invalid.
    pub fn create_silence(
        &mut self,
        request: SilenceRequest,
        now_ms: i64,
    ) -> Result<Silence, AlertError> {
        self.core.silence_seq += 1;
        let silence = request.into_silence(now_ms, self.core.silence_seq)?;
        self.silences.insert(silence.id.clone(), silence.clone());
        self.dirty = true;
        Ok(silence)
    }

    /// Expires a silence now (its end becomes `now_ms`); expiring an expired one changes
    /// nothing.
    ///
    /// # Errors
    /// [`AlertError::SilenceNotFound`] when no silence has this id.
    pub fn expire_silence(&mut self, id: &str, now_ms: i64) -> Result<Silence, AlertError> {
        let silence = self
            .silences
            .get_mut(id)
            .ok_or_else(|| AlertError::SilenceNotFound(id.to_owned()))?;
        if silence.state(now_ms) != SilenceState::Expired {
            silence.ends_at_ms = now_ms;
            if silence.starts_at_ms > now_ms {
                silence.starts_at_ms = now_ms;
            }
            silence.updated_at_ms = now_ms;
            self.dirty = true;
        }
        Ok(silence.clone())
    }

    /// Deletes silences that ended before `cutoff_ms`; returns their ids.
    pub(crate) fn gc_silences(&mut self, cutoff_ms: i64) -> Vec<String> {
        let old: Vec<String> = self
            .silences
            .values()
            .filter(|s| s.ends_at_ms < cutoff_ms)
            .map(|s| s.id.clone())
            .collect();
        for id in &old {
            self.silences.remove(id);
        }
        old
    }

    /// Takes the history events recorded since the last call.
    pub fn take_history(&mut self) -> Vec<HistoryEvent> {
        std::mem::take(&mut self.history)
    }

    /// Returns true (and clears the flag) when alerts, groups, silences or incidents changed
    /// since the last call.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Returns how many inputs every rule ignored at its series cap.
    pub fn untracked_total(&self) -> u64 {
        self.rules.iter().map(|r| r.untracked).sum()
    }

    /// Returns the number of alerts per status.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |s| self.alerts.values().filter(|a| a.status == s).count();
        (
            count(AlertStatus::Pending),
            count(AlertStatus::Firing),
            count(AlertStatus::Resolved),
        )
    }

    /// Returns a copy of everything to persist; rule states only with `with_rules`.
    pub(crate) fn snapshot(&self, with_rules: bool) -> EngineSnapshot {
        EngineSnapshot {
            core: self.core.clone(),
            alerts: self.alerts.values().cloned().collect(),
            silences: self.silences.values().cloned().collect(),
            incidents: self.incidents.clone(),
            rule_states: if with_rules {
                self.rules
                    .iter()
                    .map(|r| (r.rule.name.clone(), r.state.clone()))
                    .collect()
            } else {
                BTreeMap::new()
            },
        }
    }
}

/// Substitutes `{label}` with label values and `{value}` with the condition's value.
fn render_template(template: &str, labels: &Labels, value: Option<f64>) -> String {
    let mut out = template.to_owned();
    for (name, v) in labels {
        out = out.replace(&format!("{{{name}}}"), v);
    }
    let value = value.map(super::rule::fmt_num).unwrap_or_default();
    out.replace("{value}", &value)
}
