//! Rule state: what each rule remembers of its inputs, and the conditions it reports.
//!
//! Every rule kind keeps a small state per instance (series, consumer group, probe) or one SLI
//! bucket set, capped at `max_series_per_rule`. [`RuleRuntime::conditions`] returns one
//! [`Condition`] per instance whose condition holds *now*; instances not returned are inactive.

use std::collections::{BTreeMap, VecDeque};

use pipewarden_collector::StageWindow;
use serde::{Deserialize, Serialize};

use super::burn_rate::{SliBuckets, WindowBurn, budget_lasts_ms};
use super::config::{RuleSpec, SliConfig, ValidRule, ValidSlo, lag_rank};
use super::input::{AnomalyInput, LagVerdictInput, PointInput, ProbeResultInput, SpanSliInput};
use super::model::{Labels, encode_query_value};

/// One instance whose condition holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// Instance labels (the engine adds the rule's labels).
    pub(crate) labels: Labels,
    /// One line a person can act on.
    pub(crate) summary: String,
    /// The evidence.
    pub(crate) description: String,
    /// Path and query into the web UI (`/?series=...`).
    pub(crate) ui_path: String,
    /// Value behind the condition.
    pub(crate) value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesLast {
    stage: String,
    name: String,
    timestamp_ms: i64,
    value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Streak {
    stage: String,
    name: String,
    /// Consecutive qualifying points.
    count: u32,
    /// Newest point seen (any score).
    last_ts: i64,
    /// Newest qualifying point.
    last_qualifying_ms: i64,
    score: f64,
    value: f64,
    typical: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LagLast {
    cluster: String,
    group: String,
    status: String,
    timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProbeRun {
    timestamp_ms: i64,
    ok: bool,
    up: bool,
    latency_ms: f64,
}

/// What a rule remembers; persisted as JSON so a restart carries on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RuleState {
    Threshold {
        series: BTreeMap<String, SeriesLast>,
    },
    Anomaly {
        series: BTreeMap<String, Streak>,
    },
    Lag {
        groups: BTreeMap<String, LagLast>,
    },
    Probe {
        probes: BTreeMap<String, VecDeque<ProbeRun>>,
    },
    Slo {
        buckets: SliBuckets,
        last_event_ms: Option<i64>,
    },
}

impl RuleState {
    fn empty(spec: &RuleSpec) -> Self {
        match spec {
            RuleSpec::Threshold { .. } => Self::Threshold {
                series: BTreeMap::new(),
            },
            RuleSpec::Anomaly { .. } => Self::Anomaly {
                series: BTreeMap::new(),
            },
            RuleSpec::Lag { .. } => Self::Lag {
                groups: BTreeMap::new(),
            },
            RuleSpec::Probe { .. } => Self::Probe {
                probes: BTreeMap::new(),
            },
            RuleSpec::Slo(slo) => Self::Slo {
                buckets: SliBuckets::new(slo.resolution_ms),
                last_event_ms: None,
            },
        }
    }

    fn same_kind(&self, spec: &RuleSpec) -> bool {
        matches!(
            (self, spec),
            (Self::Threshold { .. }, RuleSpec::Threshold { .. })
                | (Self::Anomaly { .. }, RuleSpec::Anomaly { .. })
                | (Self::Lag { .. }, RuleSpec::Lag { .. })
                | (Self::Probe { .. }, RuleSpec::Probe { .. })
        ) || matches!((self, spec), (Self::Slo { buckets, .. }, RuleSpec::Slo(slo))
            if buckets.resolution_ms() == slo.resolution_ms)
    }
}

/// A rule with its state.
#[derive(Debug, Clone)]
pub(crate) struct RuleRuntime {
    pub(crate) rule: ValidRule,
    pub(crate) state: RuleState,
    max_series: usize,
    /// Inputs ignored because the rule already tracks `max_series` instances.
    pub(crate) untracked: u64,
}

/// Inserts into a capped map; returns None (and counts) when full.
fn slot<'a, V>(
    map: &'a mut BTreeMap<String, V>,
    key: &str,
    max: usize,
    untracked: &mut u64,
    make: impl FnOnce() -> V,
) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        if map.len() >= max {
            *untracked += 1;
            return None;
        }
        map.insert(key.to_owned(), make());
    }
    map.get_mut(key)
}

impl RuleRuntime {
    pub(crate) fn new(rule: ValidRule, max_series: usize) -> Self {
        let state = RuleState::empty(&rule.spec);
        Self {
            rule,
            state,
            max_series,
            untracked: 0,
        }
    }

    /// Puts back a persisted state when it fits the rule's kind (else keeps the empty one).
    pub(crate) fn restore(&mut self, state: RuleState) {
        if state.same_kind(&self.rule.spec) {
            self.state = state;
        }
    }

    pub(crate) fn observe_point(&mut self, p: &PointInput) {
        let max = self.max_series;
        match (&self.rule.spec, &mut self.state) {
            (RuleSpec::Threshold { select, .. }, RuleState::Threshold { series })
                if select.matches(&p.key, &p.stage, &p.name, &p.attributes) =>
            {
                let make = || SeriesLast {
                    stage: p.stage.clone(),
                    name: p.name.clone(),
                    timestamp_ms: i64::MIN,
                    value: 0.0,
                };
                if let Some(last) = slot(series, &p.key, max, &mut self.untracked, make)
                    && p.timestamp_ms >= last.timestamp_ms
                {
                    last.timestamp_ms = p.timestamp_ms;
                    last.value = p.value;
                }
            }
            (
                RuleSpec::Anomaly {
                    select,
                    min_score,
                    clear_after_ms,
                    ..
                },
                RuleState::Anomaly { series },
            ) if select.matches(&p.key, &p.stage, &p.name, &p.attributes) => {
                if let Some(score) = p.score {
                    let (min_score, clear_after_ms) = (*min_score, *clear_after_ms);
                    streak_observe(
                        series,
                        max,
                        &mut self.untracked,
                        (&p.key, &p.stage, &p.name),
                        (p.timestamp_ms, p.value, score, None),
                        min_score,
                        clear_after_ms,
                    );
                }
            }
            _ => {}
        }
    }

    pub(crate) fn observe_anomaly(&mut self, a: &AnomalyInput) {
        let max = self.max_series;
        if let (
            RuleSpec::Anomaly {
                select,
                min_score,
                clear_after_ms,
                ..
            },
            RuleState::Anomaly { series },
        ) = (&self.rule.spec, &mut self.state)
            && select.matches(&a.key, &a.stage, &a.name, &[])
        {
            let (min_score, clear_after_ms) = (*min_score, *clear_after_ms);
            streak_observe(
                series,
                max,
                &mut self.untracked,
                (&a.key, &a.stage, &a.name),
                (a.timestamp_ms, a.value, a.score, a.typical),
                min_score,
                clear_after_ms,
            );
        }
    }

    pub(crate) fn observe_lag(&mut self, v: &LagVerdictInput) {
        let max = self.max_series;
        if let (RuleSpec::Lag { cluster, group, .. }, RuleState::Lag { groups }) =
            (&self.rule.spec, &mut self.state)
            && cluster.as_deref().is_none_or(|c| c == v.cluster)
            && group.as_deref().is_none_or(|g| g == v.group)
        {
            let key = format!("{}\u{1f}{}", v.cluster, v.group);
            let make = || LagLast {
                cluster: v.cluster.clone(),
                group: v.group.clone(),
                status: String::new(),
                timestamp_ms: i64::MIN,
            };
            if let Some(last) = slot(groups, &key, max, &mut self.untracked, make)
                && v.timestamp_ms >= last.timestamp_ms
            {
                last.status = v.status.trim().to_ascii_uppercase();
                last.timestamp_ms = v.timestamp_ms;
            }
        }
    }

    pub(crate) fn observe_probe(&mut self, r: &ProbeResultInput) {
        let max = self.max_series;
        match (&self.rule.spec, &mut self.state) {
            (
                RuleSpec::Probe {
                    probe,
                    runs,
                    max_latency_ms,
                    ..
                },
                RuleState::Probe { probes },
            ) if probe.as_deref().is_none_or(|p| p == r.probe) => {
                let ok = r.up && max_latency_ms.is_none_or(|max| r.latency_ms <= max);
                let keep = usize::try_from(*runs).unwrap_or(usize::MAX);
                if let Some(history) =
                    slot(probes, &r.probe, max, &mut self.untracked, VecDeque::new)
                {
                    if history
                        .back()
                        .is_some_and(|last| r.timestamp_ms < last.timestamp_ms)
                    {
                        return;
                    }
                    history.push_back(ProbeRun {
                        timestamp_ms: r.timestamp_ms,
                        ok,
                        up: r.up,
                        latency_ms: r.latency_ms,
                    });
                    while history.len() > keep {
                        history.pop_front();
                    }
                }
            }
            (
                RuleSpec::Slo(slo),
                RuleState::Slo {
                    buckets,
                    last_event_ms,
                },
            ) => {
                if let SliConfig::Probe {
                    probe,
                    max_latency_ms,
                } = &slo.sli
                    && *probe == r.probe
                {
                    let ok = r.up && max_latency_ms.is_none_or(|max| r.latency_ms <= max);
                    buckets.add(r.timestamp_ms, u64::from(ok), 1);
                    *last_event_ms =
                        Some(last_event_ms.map_or(r.timestamp_ms, |t| t.max(r.timestamp_ms)));
                }
            }
            _ => {}
        }
    }

    pub(crate) fn observe_span_sli(&mut self, s: &SpanSliInput) {
        if let (
            RuleSpec::Slo(slo),
            RuleState::Slo {
                buckets,
                last_event_ms,
            },
        ) = (&self.rule.spec, &mut self.state)
        {
            let wanted = match &slo.sli {
                SliConfig::Counts { stage, sli } => *stage == s.stage && *sli == s.sli,
                _ => false,
            };
            if wanted {
                buckets.add(s.timestamp_ms, s.good, s.total);
                *last_event_ms =
                    Some(last_event_ms.map_or(s.timestamp_ms, |t| t.max(s.timestamp_ms)));
            }
        }
    }

    pub(crate) fn observe_stage_window(&mut self, w: &StageWindow) {
        if let (
            RuleSpec::Slo(slo),
            RuleState::Slo {
                buckets,
                last_event_ms,
            },
        ) = (&self.rule.spec, &mut self.state)
        {
            let counted = match &slo.sli {
                SliConfig::SpanSuccess { stage } if *stage == w.stage => {
                    let s = SpanSliInput::success_from_window(w);
                    Some((s.good, s.total))
                }
                SliConfig::SpanLatency {
                    stage,
                    percentile,
                    max_latency_ms,
                } if *stage == w.stage && w.spans > 0 => {
                    let latency = match percentile {
                        50 => w.latency_p50_ms,
                        99 => w.latency_p99_ms,
                        _ => w.latency_p95_ms,
                    };
                    latency.map(|l| (u64::from(l <= *max_latency_ms), 1))
                }
                _ => None,
            };
            if let Some((good, total)) = counted {
                buckets.add(w.window_end_ms, good, total);
                *last_event_ms =
                    Some(last_event_ms.map_or(w.window_end_ms, |t| t.max(w.window_end_ms)));
            }
        }
    }

    /// Returns the instances whose condition holds at `now_ms`, and forgets stale ones.
    pub(crate) fn conditions(&mut self, now_ms: i64, stale_after_ms: i64) -> Vec<Condition> {
        let fresh = |ts: i64| now_ms.saturating_sub(ts) <= stale_after_ms;
        let mut out = Vec::new();
        match (&self.rule.spec, &mut self.state) {
            (RuleSpec::Threshold { op, value, .. }, RuleState::Threshold { series }) => {
                series.retain(|_, last| fresh(last.timestamp_ms));
                for (key, last) in series.iter() {
                    if !op.holds(last.value, *value) {
                        continue;
                    }
                    out.push(Condition {
                        labels: series_labels(&last.stage, &last.name, key),
                        summary: format!(
                            "{} of {} is {} ({} {})",
                            last.name,
                            last.stage,
                            fmt_num(last.value),
                            op.as_str(),
                            fmt_num(*value)
                        ),
                        description: format!(
                            "series {key}: latest value {} at {} (threshold {} {})",
                            fmt_num(last.value),
                            super::model::rfc3339(last.timestamp_ms),
                            op.as_str(),
                            fmt_num(*value)
                        ),
                        ui_path: format!("/?series={}", encode_query_value(key)),
                        value: Some(last.value),
                    });
                }
            }
            (
                RuleSpec::Anomaly {
                    points,
                    clear_after_ms,
                    min_score,
                    ..
                },
                RuleState::Anomaly { series },
            ) => {
                let clear_after_ms = *clear_after_ms;
                series.retain(|_, s| {
                    fresh(s.last_ts) || now_ms - s.last_qualifying_ms <= clear_after_ms
                });
                for (key, s) in series.iter() {
                    if s.count < *points
                        || now_ms.saturating_sub(s.last_qualifying_ms) > clear_after_ms
                    {
                        continue;
                    }
                    let typical = s
                        .typical
                        .map(|t| format!(" vs typical {}", fmt_num(t)))
                        .unwrap_or_default();
                    out.push(Condition {
                        labels: series_labels(&s.stage, &s.name, key),
                        summary: format!(
                            "anomalous {} at {}: {}{} (score {:.0}, {} points in a row)",
                            s.name,
                            s.stage,
                            fmt_num(s.value),
                            typical,
                            s.score,
                            s.count
                        ),
                        description: format!(
                            "series {key}: {} consecutive points scored at least {} (latest \
                             score {:.1} at {})",
                            s.count,
                            fmt_num(*min_score),
                            s.score,
                            super::model::rfc3339(s.last_qualifying_ms)
                        ),
                        ui_path: format!("/?series={}", encode_query_value(key)),
                        value: Some(s.score),
                    });
                }
            }
            (RuleSpec::Lag { min_rank, .. }, RuleState::Lag { groups }) => {
                groups.retain(|_, last| fresh(last.timestamp_ms));
                for last in groups.values() {
                    let rank = lag_rank(&last.status);
                    if rank < *min_rank {
                        continue;
                    }
                    let mut labels = Labels::new();
                    labels.insert("cluster".to_owned(), last.cluster.clone());
                    labels.insert("group".to_owned(), last.group.clone());
                    out.push(Condition {
                        labels,
                        summary: format!(
                            "consumer group {} on cluster {} is {}",
                            last.group, last.cluster, last.status
                        ),
                        description: format!(
                            "lag verdict {} at {} (rule fires at {} or worse)",
                            last.status,
                            super::model::rfc3339(last.timestamp_ms),
                            super::config::LAG_STATUSES[usize::from(*min_rank)]
                        ),
                        ui_path: format!(
                            "/?stage={}",
                            encode_query_value(&format!("kafka/{}/{}", last.cluster, last.group))
                        ),
                        value: Some(f64::from(rank)),
                    });
                }
            }
            (RuleSpec::Probe { failures, runs, .. }, RuleState::Probe { probes }) => {
                probes.retain(|_, h| h.back().is_some_and(|r| fresh(r.timestamp_ms)));
                for (probe, history) in probes.iter() {
                    let failed = history.iter().filter(|r| !r.ok).count();
                    if u32::try_from(failed).unwrap_or(u32::MAX) < *failures {
                        continue;
                    }
                    let mut labels = Labels::new();
                    labels.insert("probe".to_owned(), probe.clone());
                    let last = history.back();
                    let last_text = last
                        .map(|r| {
                            format!(
                                "last run {} in {} ms at {}",
                                if r.up { "up" } else { "down" },
                                fmt_num(r.latency_ms),
                                super::model::rfc3339(r.timestamp_ms)
                            )
                        })
                        .unwrap_or_default();
                    out.push(Condition {
                        labels,
                        summary: format!(
                            "probe {probe} failed {failed} of its last {} runs",
                            history.len()
                        ),
                        description: format!(
                            "{failed} failed of {} runs (rule: {failures} of {runs}); {last_text}",
                            history.len()
                        ),
                        ui_path: format!("/?probe={}", encode_query_value(probe)),
                        value: Some(failed as f64),
                    });
                }
            }
            (RuleSpec::Slo(slo), RuleState::Slo { buckets, .. }) => {
                let keep = slo.windows.iter().map(|w| w.long_ms).max().unwrap_or(0);
                buckets.prune(now_ms, keep);
                out = slo_conditions(&self.rule.name, slo, buckets, now_ms);
            }
            _ => {}
        }
        out
    }
}

fn series_labels(stage: &str, name: &str, key: &str) -> Labels {
    let mut labels = Labels::new();
    labels.insert("stage".to_owned(), stage.to_owned());
    labels.insert("signal".to_owned(), name.to_owned());
    labels.insert("series".to_owned(), key.to_owned());
    labels
}

fn streak_observe(
    series: &mut BTreeMap<String, Streak>,
    max: usize,
    untracked: &mut u64,
    (key, stage, name): (&str, &str, &str),
    (ts, value, score, typical): (i64, f64, f64, Option<f64>),
    min_score: f64,
    clear_after_ms: i64,
) {
    let qualifies = score >= min_score;
    if !qualifies && !series.contains_key(key) {
        // Nothing to reset; don't spend a slot on a normal series.
        return;
    }
    let make = || Streak {
        stage: stage.to_owned(),
        name: name.to_owned(),
        count: 0,
        last_ts: i64::MIN,
        last_qualifying_ms: i64::MIN,
        score: 0.0,
        value: 0.0,
        typical: None,
    };
    let Some(s) = slot(series, key, max, untracked, make) else {
        return;
    };
    if ts <= s.last_ts {
        // The same point seen twice (as a scored point and as an anomaly), or out of order.
        if ts == s.last_ts && typical.is_some() {
            s.typical = typical;
        }
        return;
    }
    s.last_ts = ts;
    if qualifies {
        let gap = ts.saturating_sub(s.last_qualifying_ms);
        s.count = if s.count > 0 && gap <= clear_after_ms {
            s.count.saturating_add(1)
        } else {
            1
        };
        s.last_qualifying_ms = ts;
        s.score = score;
        s.value = value;
        if typical.is_some() {
            s.typical = typical;
        }
    } else {
        s.count = 0;
    }
}

fn slo_conditions(name: &str, slo: &ValidSlo, buckets: &SliBuckets, now_ms: i64) -> Vec<Condition> {
    let (what, subject_label, ui_path) = match &slo.sli {
        SliConfig::Probe { probe, .. } => (
            format!("probe {probe} success"),
            ("probe", probe.clone()),
            format!("/?probe={}", encode_query_value(probe)),
        ),
        SliConfig::SpanSuccess { stage } => (
            format!("span success of {stage}"),
            ("stage", stage.clone()),
            format!("/?stage={}", encode_query_value(stage)),
        ),
        SliConfig::SpanLatency {
            stage,
            percentile,
            max_latency_ms,
        } => (
            format!(
                "windows of {stage} with p{percentile} latency <= {} ms",
                fmt_num(*max_latency_ms)
            ),
            ("stage", stage.clone()),
            format!("/?stage={}", encode_query_value(stage)),
        ),
        SliConfig::Counts { stage, sli } => (
            format!("{sli} of {stage}"),
            ("stage", stage.clone()),
            format!("/?stage={}", encode_query_value(stage)),
        ),
    };
    let mut out = Vec::new();
    for w in &slo.windows {
        let burn = WindowBurn::at(buckets, now_ms, w.long_ms, w.short_ms, slo.objective);
        if !burn.fires(w.burn_rate, slo.min_events) {
            continue;
        }
        let mut labels = Labels::new();
        labels.insert("window".to_owned(), w.label.clone());
        labels.insert("severity".to_owned(), w.severity.clone());
        labels.insert(subject_label.0.to_owned(), subject_label.1.clone());
        let lasts = budget_lasts_ms(burn.long, slo.period_ms)
            .map(|ms| {
                let d = std::time::Duration::from_secs(u64::try_from(ms / 1000).unwrap_or(0));
                format!(
                    "; at this rate the {} budget lasts {}",
                    fmt_period(slo.period_ms),
                    humantime::format_duration(d)
                )
            })
            .unwrap_or_default();
        let short = humantime::format_duration(std::time::Duration::from_millis(
            u64::try_from(w.short_ms).unwrap_or(0),
        ));
        out.push(Condition {
            labels,
            summary: format!(
                "SLO {name} ({}% {what}) burns its error budget {}x over {} and {}x over {} \
                 (alert at {}x){lasts}",
                fmt_num(slo.objective * 100.0),
                fmt_num(burn.long),
                w.label,
                fmt_num(burn.short),
                short,
                fmt_num(w.burn_rate),
            ),
            description: format!(
                "events: {} over {}, {} over {}; objective {}",
                burn.long_total, w.label, burn.short_total, short, slo.objective
            ),
            ui_path: ui_path.clone(),
            value: Some(burn.long),
        });
    }
    out
}

fn fmt_period(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(
        u64::try_from(ms / 1000).unwrap_or(0),
    ))
    .to_string()
}

/// Formats a number for people: at most 4 decimals, no trailing zeros.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(14.4), "14.4");
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(1234.56), "1234.6");
        assert_eq!(fmt_num(0.123456), "0.1235");
        assert_eq!(fmt_num(99.9), "99.9");
    }
}
