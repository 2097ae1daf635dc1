//! Engine tests with the time given by hand, and service tests on tokio's paused clock.

use std::time::Duration;

use pipewarden_collector::{StageWindow, series_key};
use serde_json::Value;

use super::*;

/// An arbitrary wall time, aligned to the hour so SLO windows are exact.
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
const S: i64 = 1_000;
const MIN: i64 = 60 * S;

fn valid(text: &str) -> ValidAlertConfig {
    toml::from_str::<AlertConfig>(text)
        .unwrap()
        .validate()
        .unwrap()
}

fn engine(text: &str) -> AlertEngine {
    AlertEngine::new(valid(text))
}

fn point(stage: &str, name: &str, ts: i64, value: f64) -> PointInput {
    PointInput {
        key: series_key(stage, name, &[]),
        stage: stage.to_owned(),
        name: name.to_owned(),
        attributes: vec![],
        timestamp_ms: ts,
        value,
        score: None,
    }
}

fn scored(stage: &str, name: &str, ts: i64, value: f64, score: f64) -> PointInput {
    PointInput {
        score: Some(score),
        ..point(stage, name, ts, value)
    }
}

fn lag(cluster: &str, group: &str, status: &str, ts: i64) -> LagVerdictInput {
    LagVerdictInput {
        cluster: cluster.to_owned(),
        group: group.to_owned(),
        status: status.to_owned(),
        timestamp_ms: ts,
    }
}

fn probe(name: &str, up: bool, ts: i64) -> ProbeResultInput {
    ProbeResultInput {
        probe: name.to_owned(),
        up,
        timestamp_ms: ts,
        latency_ms: 12.0,
    }
}

fn names(n: &Notification) -> Vec<(String, AlertStatus)> {
    n.alerts
        .iter()
        .map(|a| {
            let who = a
                .labels
                .get("stage")
                .or_else(|| a.labels.get("cluster"))
                .or_else(|| a.labels.get("probe"))
                .cloned()
                .unwrap_or_default();
            (format!("{}:{who}", a.name()), a.status)
        })
        .collect()
}

fn events(engine: &mut AlertEngine) -> Vec<String> {
    engine.take_history().into_iter().map(|h| h.event).collect()
}

/// A threshold rule on `span.error_ratio` above 0.05 (the other test modules of alerting use it too).
pub(super) const THRESHOLD: &str = r#"
    [[rules]]
    kind = "threshold"
    name = "HighErrorRatio"
    signal = "span.error_ratio"
    op = ">"
    value = 0.05
"#;

#[test]
fn threshold_goes_pending_firing_resolved_with_exact_notifications() {
    let mut e = engine(&format!(
        r#"
        resolve_hold_down = "0s"
        {THRESHOLD}
        for = "1m"
        [route]
        group_by = ["alertname", "stage"]
        group_wait = "30s"
        group_interval = "5m"
        repeat_interval = "4h"
        "#
    ));
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.1));
    assert!(e.evaluate(T0).is_empty());
    assert_eq!(e.alerts()[0].status, AlertStatus::Pending);
    e.observe_point(&point("svc/a", "span.error_ratio", T0 + 30 * S, 0.12));
    assert!(e.evaluate(T0 + 30 * S).is_empty());
    // `for` elapsed: firing now, notified after group_wait.
    assert!(e.evaluate(T0 + MIN).is_empty());
    let alert = &e.alerts()[0];
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.starts_at_ms, Some(T0 + MIN));
    assert!(e.evaluate(T0 + 80 * S).is_empty());

    let sent = e.evaluate(T0 + 90 * S);
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.kind, NotificationKind::Group);
    assert_eq!(n.status, AlertStatus::Firing);
    assert_eq!(n.created_ms, T0 + 90 * S);
    assert_eq!(
        n.group_key,
        r#"{}:{alertname="HighErrorRatio",stage="svc/a"}"#
    );
    assert_eq!(
        names(n),
        [("HighErrorRatio:svc/a".into(), AlertStatus::Firing)]
    );
    let a = &n.alerts[0];
    let key = series_key("svc/a", "span.error_ratio", &[]);
    let labels: Vec<(&str, &str)> = a
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("alertname", "HighErrorRatio"),
            ("series", key.as_str()),
            ("severity", "warning"),
            ("signal", "span.error_ratio"),
            ("stage", "svc/a"),
        ]
    );
    assert_eq!(
        a.annotations["summary"],
        "span.error_ratio of svc/a is 0.12 (> 0.05)"
    );
    assert_eq!(
        a.annotations["ui_url"],
        "http://127.0.0.1:9464/?series=svc%2Fa%7Cspan.error_ratio%7C"
    );
    assert_eq!(a.value, Some(0.12));

    // The value recovers: resolved at the next evaluation, notified at the group's next flush.
    e.observe_point(&point("svc/a", "span.error_ratio", T0 + 100 * S, 0.01));
    assert!(e.evaluate(T0 + 120 * S).is_empty());
    let alert = &e.alerts()[0];
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.ends_at_ms, Some(T0 + 120 * S));
    for t in (130..390).step_by(10) {
        assert!(e.evaluate(T0 + t * S).is_empty(), "at {t}s");
    }
    let sent = e.evaluate(T0 + 390 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, AlertStatus::Resolved);
    assert_eq!(
        names(&sent[0]),
        [("HighErrorRatio:svc/a".into(), AlertStatus::Resolved)]
    );
    assert_eq!(sent[0].alerts[0].ends_at_ms, Some(T0 + 120 * S));
    assert!(e.alerts().is_empty());
    assert!(e.evaluate(T0 + 690 * S).is_empty());
    assert_eq!(
        events(&mut e),
        ["pending", "firing", "notified", "resolved", "notified"]
    );
}

#[test]
fn groups_alerts_and_repeats_unchanged_groups() {
    let mut e = engine(&format!(
        r#"
        stale_after = "1h"
        {THRESHOLD}
        [route]
        group_by = ["alertname"]
        group_wait = "10s"
        group_interval = "1m"
        repeat_interval = "5m"
        "#
    ));
    let mut sent = Vec::new();
    for t in (0..=400).step_by(10) {
        let now = T0 + t * S;
        if t == 0 {
            e.observe_point(&point("svc/a", "span.error_ratio", now, 0.5));
            e.observe_point(&point("svc/b", "span.error_ratio", now, 0.6));
        }
        if t == 20 {
            e.observe_point(&point("svc/c", "span.error_ratio", now, 0.7));
        }
        for n in e.evaluate(now) {
            sent.push((t, n.alerts.len(), n.status));
        }
    }
    assert_eq!(
        sent,
        [
            // First flush after group_wait: both alerts in one notification.
            (10, 2, AlertStatus::Firing),
            // A new alert waits for the next group_interval tick.
            (70, 3, AlertStatus::Firing),
            // Unchanged: repeated at the first tick at least repeat_interval later.
            (370, 3, AlertStatus::Firing),
        ]
    );
}

#[test]
fn broker_down_inhibits_lag_alerts_of_its_cluster_only() {
    let mut e = engine(
        r#"
        resolve_hold_down = "0s"
        [[rules]]
        kind = "probe"
        name = "BrokerDown"
        probe = "kafka-main"
        failures = 1
        runs = 1
        severity = "critical"
        labels = { cluster = "main" }
        [[rules]]
        kind = "lag"
        name = "ConsumerLag"
        [route]
        group_by = ["alertname"]
        group_wait = "0s"
        group_interval = "1m"
        [[inhibit_rules]]
        source_matchers = ["alertname=BrokerDown"]
        target_matchers = ["alertname=ConsumerLag"]
        equal = ["cluster"]
        "#,
    );
    e.observe_lag(&lag("main", "orders", "WARN", T0));
    e.observe_lag(&lag("other", "billing", "ERR", T0));
    e.observe_probe(&probe("kafka-main", false, T0));
    let mut sent = e.evaluate(T0);
    sent.sort_by_key(|n| n.group_key.clone());
    assert_eq!(sent.len(), 2);
    assert_eq!(
        names(&sent[0]),
        [("BrokerDown:main".into(), AlertStatus::Firing)]
    );
    assert_eq!(
        names(&sent[1]),
        [("ConsumerLag:other".into(), AlertStatus::Firing)]
    );
    let alerts = e.alerts();
    let broker = alerts.iter().find(|a| a.name() == "BrokerDown").unwrap();
    let main_lag = alerts
        .iter()
        .find(|a| {
            a.labels.get("cluster").map(String::as_str) == Some("main") && a.name() == "ConsumerLag"
        })
        .unwrap();
    assert_eq!(main_lag.status, AlertStatus::Firing);
    assert_eq!(
        main_lag.inhibited_by,
        std::slice::from_ref(&broker.fingerprint)
    );
    assert!(main_lag.is_muted());

    // The broker comes back: its alert resolves, the lag alert of its cluster is no longer
    // muted and joins the lag group's next notification.
    e.observe_probe(&probe("kafka-main", true, T0 + 30 * S));
    e.observe_lag(&lag("main", "orders", "WARN", T0 + 30 * S));
    e.observe_lag(&lag("other", "billing", "ERR", T0 + 30 * S));
    assert!(e.evaluate(T0 + 30 * S).is_empty());
    let mut sent = e.evaluate(T0 + MIN);
    sent.sort_by_key(|n| n.group_key.clone());
    assert_eq!(sent.len(), 2);
    assert_eq!(
        names(&sent[0]),
        [("BrokerDown:main".into(), AlertStatus::Resolved)]
    );
    let mut lag_alerts = names(&sent[1]);
    lag_alerts.sort_by_key(|(name, _)| name.clone());
    assert_eq!(
        lag_alerts,
        [
            ("ConsumerLag:main".into(), AlertStatus::Firing),
            ("ConsumerLag:other".into(), AlertStatus::Firing)
        ]
    );
    let history = events(&mut e);
    assert!(history.contains(&"inhibited".to_owned()), "{history:?}");
    assert!(history.contains(&"uninhibited".to_owned()), "{history:?}");
}

#[test]
fn silences_mute_until_expired() {
    let mut e = engine(&format!(
        r#"
        {THRESHOLD}
        [route]
        group_wait = "0s"
        group_interval = "1m"
        "#
    ));
    let silence = e
        .create_silence(
            SilenceRequest {
                matchers: vec!["alertname=HighErrorRatio".into(), "stage=~svc/.*".into()],
                duration: Some(Duration::from_secs(600)),
                created_by: "ops".into(),
                comment: "deploy".into(),
                ..SilenceRequest::default()
            },
            T0,
        )
        .unwrap();
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.5));
    assert!(e.evaluate(T0).is_empty(), "silenced alerts send nothing");
    let alert = &e.alerts()[0];
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.silenced_by, std::slice::from_ref(&silence.id));
    assert!(e.evaluate(T0 + MIN).is_empty());
    assert_eq!(e.silences(T0 + MIN)[0].1, SilenceState::Active);

    let expired = e.expire_silence(&silence.id, T0 + 90 * S).unwrap();
    assert_eq!(expired.ends_at_ms, T0 + 90 * S);
    assert_eq!(e.silences(T0 + 90 * S)[0].1, SilenceState::Expired);
    let sent = e.evaluate(T0 + 2 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        names(&sent[0]),
        [("HighErrorRatio:svc/a".into(), AlertStatus::Firing)]
    );
    assert!(e.alerts()[0].silenced_by.is_empty());

    assert!(matches!(
        e.expire_silence("s-missing", T0),
        Err(AlertError::SilenceNotFound(_))
    ));
    assert!(matches!(
        e.create_silence(SilenceRequest::default(), T0),
        Err(AlertError::BadSilence(_))
    ));
    let history = events(&mut e);
    assert!(history.contains(&"silenced".to_owned()));
    assert!(history.contains(&"unsilenced".to_owned()));
}

#[test]
fn flapping_within_the_hold_down_keeps_the_alert_and_sends_nothing() {
    let mut e = engine(&format!(
        r#"
        resolve_hold_down = "5m"
        stale_after = "1h"
        {THRESHOLD}
        [route]
        group_wait = "0s"
        group_interval = "1m"
        "#
    ));
    let mut sent = Vec::new();
    for m in 0..=12 {
        let now = T0 + m * MIN;
        // Bad, good, bad, then good for good.
        let value = match m {
            0 | 2 => Some(0.5),
            1 | 3 => Some(0.0),
            _ => None,
        };
        if let Some(v) = value {
            e.observe_point(&point("svc/a", "span.error_ratio", now, v));
        }
        for n in e.evaluate(now) {
            sent.push((m, names(&n), n.alerts[0].flaps, n.alerts[0].ends_at_ms));
        }
        if m == 2 {
            let alert = &e.alerts()[0];
            assert_eq!(alert.status, AlertStatus::Firing);
            assert_eq!(alert.flaps, 1);
            assert_eq!(alert.starts_at_ms, Some(T0));
        }
    }
    assert_eq!(
        sent,
        [
            (
                0,
                vec![("HighErrorRatio:svc/a".into(), AlertStatus::Firing)],
                0,
                None
            ),
            // Cleared at minute 3, resolved 5 minutes later; ends when it cleared.
            (
                8,
                vec![("HighErrorRatio:svc/a".into(), AlertStatus::Resolved)],
                1,
                Some(T0 + 3 * MIN)
            ),
        ]
    );
    assert!(events(&mut e).contains(&"flapped".to_owned()));
}

#[test]
fn anomaly_rule_needs_consecutive_points_and_counts_each_point_once() {
    let mut e = engine(
        r#"
        resolve_hold_down = "0s"
        [[rules]]
        kind = "anomaly"
        name = "LatencyAnomaly"
        signal = "span.latency_p95_ms"
        min_score = 80
        points = 3
        [route]
        group_wait = "0s"
        "#,
    );
    let name = "span.latency_p95_ms";
    e.observe_point(&scored("svc/a", name, T0, 700.0, 90.0));
    e.observe_point(&scored("svc/a", name, T0 + 10 * S, 760.0, 85.0));
    // The same point again as an anomaly: not counted twice, but its typical value is kept.
    e.observe_anomaly(&AnomalyInput {
        key: series_key("svc/a", name, &[]),
        stage: "svc/a".into(),
        name: name.into(),
        timestamp_ms: T0 + 10 * S,
        value: 760.0,
        score: 85.0,
        typical: Some(120.0),
    });
    assert!(e.evaluate(T0 + 10 * S).is_empty());
    assert!(e.alerts().is_empty());
    e.observe_point(&scored("svc/a", name, T0 + 20 * S, 830.0, 95.0));
    let sent = e.evaluate(T0 + 20 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].alerts[0].annotations["summary"],
        "anomalous span.latency_p95_ms at svc/a: 830 vs typical 120 (score 95, 3 points in a row)"
    );
    // A normal point ends the streak.
    e.observe_point(&scored("svc/a", name, T0 + 30 * S, 130.0, 10.0));
    e.evaluate(T0 + 30 * S);
    assert_eq!(e.alerts()[0].status, AlertStatus::Resolved);
}

#[test]
fn probe_rule_counts_failures_in_the_last_runs() {
    let mut e = engine(
        r#"
        resolve_hold_down = "0s"
        [[rules]]
        kind = "probe"
        name = "ProbeDown"
        failures = 2
        runs = 3
        "#,
    );
    let mut firing_after = Vec::new();
    for (i, up) in [false, true, false, true, true].into_iter().enumerate() {
        let now = T0 + i as i64 * MIN;
        e.observe_probe(&probe("checkout", up, now));
        e.evaluate(now);
        firing_after.push(e.alerts().iter().any(|a| a.status == AlertStatus::Firing));
    }
    // down; down up; down up down (2 of 3); up down up (1 of 3): resolved.
    assert_eq!(firing_after, [false, false, true, false, false]);
    let summary = e.take_history();
    let firing = summary.iter().find(|h| h.event == "firing").unwrap();
    assert_eq!(firing.labels["probe"], "checkout");
    assert_eq!(
        firing.detail["summary"],
        "probe checkout failed 2 of its last 3 runs"
    );
}

#[test]
fn lag_rule_waits_for_its_duration_and_clears_when_stale() {
    let mut e = engine(
        r#"
        resolve_hold_down = "0s"
        stale_after = "5m"
        [[rules]]
        kind = "lag"
        name = "ConsumerStalled"
        min_status = "STALL"
        for = "2m"
        "#,
    );
    e.observe_lag(&lag("main", "orders", "WARN", T0));
    e.evaluate(T0);
    assert!(e.alerts().is_empty(), "WARN is below STALL");
    e.observe_lag(&lag("main", "orders", "STALL", T0 + 10 * S));
    e.evaluate(T0 + 10 * S);
    assert_eq!(e.alerts()[0].status, AlertStatus::Pending);
    e.observe_lag(&lag("main", "orders", "STOP", T0 + 120 * S));
    e.evaluate(T0 + 120 * S);
    assert_eq!(e.alerts()[0].status, AlertStatus::Pending);
    e.evaluate(T0 + 130 * S);
    let alert = &e.alerts()[0];
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.labels["cluster"], "main");
    assert_eq!(alert.labels["group"], "orders");
    assert_eq!(
        alert.annotations["summary"],
        "consumer group orders on cluster main is STOP"
    );
    // No verdict for longer than stale_after: the condition no longer holds.
    e.evaluate(T0 + 120 * S + 5 * MIN);
    assert_eq!(e.alerts()[0].status, AlertStatus::Firing);
    e.evaluate(T0 + 120 * S + 5 * MIN + 1);
    assert_eq!(e.alerts()[0].status, AlertStatus::Resolved);
}

#[test]
fn slo_burn_rate_alert_fires_when_both_windows_burn() {
    let mut e = engine(
        r#"
        [[rules]]
        kind = "slo"
        name = "CheckoutProbe"
        objective = 0.99
        sli = { source = "probe", probe = "checkout" }
        windows = [{ long = "1h", burn_rate = 14.4 }]
        "#,
    );
    // One run a minute: 60 good minutes, then failures from minute 61 on.
    let mut first_firing = None;
    for m in 1..=75 {
        let now = T0 + m * MIN;
        e.observe_probe(&probe("checkout", m <= 60, now));
        e.evaluate(now);
        if first_firing.is_none() && !e.alerts().is_empty() {
            first_firing = Some(m);
        }
    }
    // At minute 68 the hour holds 8 failures of 60 (burn 13.3); at 69, 9 of 60: burn 15 over
    // the hour and 100 over the last 5 minutes, both at least 14.4.
    assert_eq!(first_firing, Some(69));
    let history = e.take_history();
    let firing = history.iter().find(|h| h.event == "firing").unwrap();
    assert_eq!(firing.timestamp_ms, T0 + 69 * MIN);
    assert_eq!(firing.labels["window"], "1h");
    assert_eq!(firing.labels["severity"], "page");
    assert_eq!(firing.labels["slo"], "CheckoutProbe");
    assert_eq!(firing.labels["probe"], "checkout");
    let value = firing.detail["value"].as_f64().unwrap();
    assert!((value - 15.0).abs() < 1e-9, "{value}");
    assert_eq!(
        firing.detail["summary"],
        "SLO CheckoutProbe (99% probe checkout success) burns its error budget 15x over 1h and \
         100x over 5m (alert at 14.4x); at this rate the 30days budget lasts 2days"
    );
}

#[test]
fn slo_on_span_windows_fires_each_window_pair() {
    let mut e = engine(
        r#"
        [[rules]]
        kind = "slo"
        name = "CheckoutAvailability"
        objective = 0.999
        sli = { source = "span_success", stage = "checkout" }
        [[rules]]
        kind = "slo"
        name = "CheckoutLatency"
        objective = 0.9
        sli = { source = "span_latency", stage = "checkout", percentile = 99, max_latency_ms = 250 }
        windows = [{ long = "1h", burn_rate = 5, severity = "ticket" }]
        "#,
    );
    for m in 1..=60 {
        let end = T0 + m * MIN;
        e.observe_stage_window(&StageWindow {
            stage: "checkout".into(),
            window_start_ms: end - MIN,
            window_end_ms: end,
            spans: 1000,
            span_errors: 20,
            latency_p99_ms: Some(if m > 30 { 400.0 } else { 100.0 }),
            ..StageWindow::default()
        });
    }
    e.evaluate(T0 + 60 * MIN);
    let mut fired: Vec<(String, String, String)> = e
        .alerts()
        .iter()
        .map(|a| {
            (
                a.name().to_owned(),
                a.labels["window"].clone(),
                a.labels["severity"].clone(),
            )
        })
        .collect();
    fired.sort();
    // 2% errors burn a 99.9% objective 20x: above 14.4 (1h) and 6 (6h). Half the windows
    // slow: 50% bad against a 10% budget burns 5x over the hour, 10x over 5 minutes.
    assert_eq!(
        fired,
        [
            ("CheckoutAvailability".into(), "1h".into(), "page".into()),
            ("CheckoutAvailability".into(), "6h".into(), "page".into()),
            ("CheckoutLatency".into(), "1h".into(), "ticket".into()),
        ]
    );
}

#[test]
fn alerts_of_one_stage_form_one_incident_with_all_evidence() {
    let mut e = engine(&format!(
        r#"
        resolve_hold_down = "0s"
        {THRESHOLD}
        [[rules]]
        kind = "anomaly"
        name = "LatencyAnomaly"
        signal = "span.latency_p95_ms"
        points = 1
        [[rules]]
        kind = "probe"
        name = "ProbeDown"
        failures = 1
        runs = 1
        [incidents]
        window = "10m"
        "#
    ));
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.3));
    e.observe_probe(&probe("home", false, T0));
    e.evaluate(T0);
    e.observe_point(&scored(
        "svc/a",
        "span.latency_p95_ms",
        T0 + 2 * MIN,
        900.0,
        99.0,
    ));
    e.evaluate(T0 + 2 * MIN);
    let incidents = e.incidents();
    assert_eq!(incidents.len(), 1, "the probe alert has no stage");
    let incident = &incidents[0];
    assert_eq!(incident.key, "stage=svc/a");
    assert_eq!(incident.status, IncidentStatus::Open);
    assert_eq!(
        incident.title,
        "stage=svc/a: HighErrorRatio, LatencyAnomaly"
    );
    let evidence: Vec<&str> = incident
        .evidence
        .iter()
        .map(|e| e.alertname.as_str())
        .collect();
    assert_eq!(evidence, ["HighErrorRatio", "LatencyAnomaly"]);
    assert!(incident.evidence[1].summary.contains("900"));
    let alerts = e.alerts();
    let probe_alert = alerts.iter().find(|a| a.name() == "ProbeDown").unwrap();
    assert_eq!(probe_alert.incident_id, None);
    let stage_alert = alerts
        .iter()
        .find(|a| a.name() == "HighErrorRatio")
        .unwrap();
    assert_eq!(
        stage_alert.incident_id.as_deref(),
        Some(incident.id.as_str())
    );
    assert_eq!(stage_alert.annotations["incident"], incident.id);

    // Both recover at minute 3; the incident closes 10 minutes after the last resolution.
    e.observe_point(&point("svc/a", "span.error_ratio", T0 + 3 * MIN, 0.0));
    e.observe_point(&scored(
        "svc/a",
        "span.latency_p95_ms",
        T0 + 3 * MIN,
        100.0,
        5.0,
    ));
    e.evaluate(T0 + 3 * MIN);
    assert_eq!(e.incidents()[0].status, IncidentStatus::Open);
    e.evaluate(T0 + 12 * MIN);
    assert_eq!(e.incidents()[0].status, IncidentStatus::Open);
    e.evaluate(T0 + 13 * MIN);
    let closed = &e.incidents()[0];
    assert_eq!(closed.status, IncidentStatus::Closed);
    assert!(
        closed
            .evidence
            .iter()
            .all(|e| e.status == AlertStatus::Resolved)
    );
}

#[test]
fn alertmanager_receivers_get_forwards_and_others_get_groups() {
    let mut e = engine(&format!(
        r#"
        resolve_hold_down = "0s"
        stale_after = "1h"
        {THRESHOLD}
        [route]
        group_wait = "30s"
        [[receivers]]
        kind = "webhook"
        name = "hook"
        url = "http://127.0.0.1:1/hook"
        [[receivers]]
        kind = "alertmanager"
        name = "am"
        url = "http://127.0.0.1:2"
        resend_interval = "1m"
        "#
    ));
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.5));
    let sent = e.evaluate(T0);
    assert_eq!(sent.len(), 1, "forwards go out at once, groups wait");
    assert_eq!(sent[0].kind, NotificationKind::Forward);
    assert_eq!(sent[0].receivers, ["am"]);
    assert!(e.evaluate(T0 + 10 * S).is_empty());
    let sent = e.evaluate(T0 + 30 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::Group);
    assert_eq!(sent[0].receivers, ["hook"]);
    // Re-sent to Alertmanager every resend_interval.
    let sent = e.evaluate(T0 + MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::Forward);
    // Resolved: forwarded at once with its end.
    e.observe_point(&point("svc/a", "span.error_ratio", T0 + 70 * S, 0.0));
    let sent = e.evaluate(T0 + 70 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, AlertStatus::Resolved);
    assert_eq!(sent[0].alerts[0].ends_at_ms, Some(T0 + 70 * S));
}

fn sample_notification() -> Notification {
    let mut e = engine(&format!(
        r#"
        {THRESHOLD}
        runbook_url = "https://runbooks.example/errors"
        summary = "errors at {{stage}}: {{value}}"
        [route]
        group_wait = "0s"
        "#
    ));
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.5));
    e.observe_point(&point("svc/b", "span.error_ratio", T0, 0.25));
    e.evaluate(T0).remove(0)
}

#[test]
fn webhook_body_follows_alertmanager_v4() {
    let n = sample_notification();
    let receiver =
        match &valid("[[receivers]]\nkind='webhook'\nname='ops'\nurl='http://x/y'\nmax_alerts=1")
            .receivers[0]
        {
            ReceiverConfig::Webhook(w) => w.clone(),
            other => panic!("{other:?}"),
        };
    let body = notify::webhook::body(&n, &receiver, "http://127.0.0.1:9464").unwrap();
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "ops");
    assert_eq!(body["groupKey"], r#"{}:{alertname="HighErrorRatio"}"#);
    assert_eq!(
        body["groupLabels"],
        serde_json::json!({"alertname": "HighErrorRatio"})
    );
    assert_eq!(body["commonLabels"]["signal"], "span.error_ratio");
    assert!(body["commonLabels"].get("stage").is_none());
    assert_eq!(
        body["commonAnnotations"]["runbook_url"],
        "https://runbooks.example/errors"
    );
    assert_eq!(body["externalURL"], "http://127.0.0.1:9464");
    assert_eq!(body["truncatedAlerts"], 1);
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["startsAt"], super::model::rfc3339(T0));
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/?series=")
    );
    let summaries: Vec<&str> = n
        .alerts
        .iter()
        .map(|a| a.annotations["summary"].as_str())
        .collect();
    assert!(summaries.contains(&"errors at svc/a: 0.5"), "{summaries:?}");
}

#[test]
fn slack_and_alertmanager_bodies() {
    let n = sample_notification();
    let config = valid(
        "[[receivers]]\nkind='slack'\nname='chat'\nurl='https://x/y'\nchannel='#ops'\n\
         [[receivers]]\nkind='alertmanager'\nname='am'\nurl='http://am:9093/'\nresend_interval='1m'",
    );
    let slack = notify::Notifier::new(&config.receivers[0])
        .body(&n, "")
        .unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING:2] HighErrorRatio\n"), "{text}");
    assert!(
        text.contains("• errors at svc/a: 0.5 (<http://127.0.0.1:9464/?series="),
        "{text}"
    );
    assert_eq!(slack["channel"], "#ops");
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert_eq!(slack["blocks"].as_array().unwrap().len(), 3);

    let am = notify::Notifier::new(&config.receivers[1])
        .body(&n, "")
        .unwrap();
    let alerts = am.as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["labels"]["alertname"], "HighErrorRatio");
    assert_eq!(alerts[0]["startsAt"], super::model::rfc3339(T0));
    assert_eq!(alerts[0]["endsAt"], super::model::rfc3339(T0 + 4 * MIN));
    assert!(alerts[0].get("status").is_none());
}

#[test]
fn send_resolved_false_skips_resolved_only_notifications() {
    let mut n = sample_notification();
    for a in &mut n.alerts {
        a.status = AlertStatus::Resolved;
        a.ends_at_ms = Some(T0 + MIN);
    }
    n.status = AlertStatus::Resolved;
    let config = valid(
        "[[receivers]]\nkind='webhook'\nname='a'\nurl='http://x'\nsend_resolved=false\n\
         [[receivers]]\nkind='webhook'\nname='b'\nurl='http://x'",
    );
    assert!(
        notify::Notifier::new(&config.receivers[0])
            .body(&n, "")
            .is_none()
    );
    let body = notify::Notifier::new(&config.receivers[1])
        .body(&n, "")
        .unwrap();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["endsAt"], super::model::rfc3339(T0 + MIN));
}

#[test]
fn state_survives_a_restart_without_renotifying() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::sink::local::database_path(dir.path());
    let config = valid(&format!(
        r#"
        stale_after = "1h"
        {THRESHOLD}
        [route]
        group_wait = "0s"
        group_interval = "1m"
        repeat_interval = "10m"
        [[receivers]]
        kind = "webhook"
        name = "hook"
        url = "http://127.0.0.1:1/hook"
        "#
    ));
    let mut e = AlertEngine::new(config.clone());
    e.observe_point(&point("svc/a", "span.error_ratio", T0, 0.5));
    let sent = e.evaluate(T0);
    assert_eq!(sent.len(), 1);
    let silence = e
        .create_silence(
            SilenceRequest {
                matchers: vec!["alertname=Other".into()],
                duration: Some(Duration::from_secs(3600)),
                ..SilenceRequest::default()
            },
            T0,
        )
        .unwrap();
    let store = store::AlertStore::open(&path).unwrap();
    store
        .persist(&store::Persist {
            snapshot: e.snapshot(true),
            history: e.take_history(),
            notifications: sent,
            now_ms: T0,
        })
        .unwrap();
    let before = e.alerts();
    drop(e);
    drop(store);

    let store = store::AlertStore::open(&path).unwrap();
    let mut e = AlertEngine::restore(config, store.load(10).unwrap());
    assert_eq!(e.alerts(), before, "still firing after the restart");
    assert_eq!(e.silences(T0)[0].0, silence);
    // No new point: the restored series state still holds the breach.
    for m in 1..10 {
        assert!(e.evaluate(T0 + m * MIN).is_empty(), "minute {m}");
    }
    assert_eq!(e.alerts()[0].status, AlertStatus::Firing);
    assert_eq!(e.alerts()[0].starts_at_ms, Some(T0));
    // The repeat interval counts from the notification before the restart.
    assert_eq!(e.evaluate(T0 + 10 * MIN).len(), 1);
    let rows = store.outbox_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "hook");
    assert_eq!(rows[0].2, None);
}

#[test]
fn untracked_series_beyond_the_cap_are_counted() {
    let mut e = engine(&format!("max_series_per_rule = 2\n{THRESHOLD}"));
    for stage in ["a", "b", "c", "d"] {
        e.observe_point(&point(stage, "span.error_ratio", T0, 1.0));
    }
    e.evaluate(T0);
    assert_eq!(e.alerts().len(), 2);
    assert_eq!(e.untracked_total(), 2);
}

mod service {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;

    const CONFIG: &str = r#"
        evaluation_interval = "10s"
        resolve_hold_down = "0s"
        stale_after = "1h"
        [[rules]]
        kind = "threshold"
        name = "HighErrorRatio"
        signal = "span.error_ratio"
        op = ">"
        value = 0.05
        [route]
        group_wait = "0s"
        group_interval = "1m"
        repeat_interval = "1h"
    "#;

    async fn notified(handle: &AlertHandle) -> usize {
        handle
            .history(None, None, None, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|h| h.event == "notified")
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn evaluates_on_ticks_and_carries_on_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = valid(CONFIG);
        let (service, input) = AlertService::build_with_clock(
            config.clone(),
            dir.path(),
            AlertTelemetry::default(),
            Clock::tokio_from(T0),
        )
        .unwrap();
        let handle = service.handle();
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.run(stop.clone()));
        input
            .send(vec![AlertEvent::Point(point(
                "svc/a",
                "span.error_ratio",
                T0,
                0.5,
            ))])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let alerts = handle.alerts();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        // Evaluated on the 10 s tick, after the input arrived.
        assert_eq!(alerts[0].starts_at_ms, Some(T0 + 10 * S));
        assert_eq!(notified(&handle).await, 1);
        assert_eq!(handle.health().status(), "ready");
        stop.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(handle.health().status(), "not_ready");

        // Restart on the same data directory 30 s later.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let (service, _input) = AlertService::build_with_clock(
            config,
            dir.path(),
            AlertTelemetry::default(),
            Clock::tokio_from(T0 + 45 * S),
        )
        .unwrap();
        let handle = service.handle();
        assert_eq!(
            handle.alerts(),
            alerts,
            "restored before the first evaluation"
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(5 * 60)).await;
        let after = handle.alerts();
        assert_eq!(after[0].status, AlertStatus::Firing);
        assert_eq!(after[0].starts_at_ms, Some(T0 + 10 * S));
        assert_eq!(
            notified(&handle).await,
            1,
            "no second page after the restart"
        );
        stop.cancel();
        task.await.unwrap().unwrap();
    }

    async fn call(
        router: &axum::Router,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn api_lists_alerts_and_manages_silences() {
        let dir = tempfile::tempdir().unwrap();
        let (service, input) = AlertService::build_with_clock(
            valid(&CONFIG.replace("\"10s\"", "\"50ms\"")),
            dir.path(),
            AlertTelemetry::default(),
            Clock::manual(T0),
        )
        .unwrap();
        let handle = service.handle();
        let router: axum::Router =
            axum::Router::new().nest("/api/v1/alerting", api::router(handle.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.run(stop.clone()));

        let (status, body) = call(
            &router,
            "POST",
            "/api/v1/alerting/silences",
            Some(serde_json::json!({
                "matchers": ["alertname=HighErrorRatio"],
                "duration": "1h",
                "created_by": "ops",
                "comment": "maintenance",
            })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["silence"]["id"].as_str().unwrap().to_owned();
        assert_eq!(body["silence"]["state"], "active");
        assert_eq!(
            body["silence"]["matchers"][0],
            "alertname=\"HighErrorRatio\""
        );

        let (status, body) = call(
            &router,
            "POST",
            "/api/v1/alerting/silences",
            Some(serde_json::json!({ "matchers": ["nope"], "duration": "1h" })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("matchers[0]"),
            "{body}"
        );

        input
            .send(vec![AlertEvent::Point(point(
                "svc/a",
                "span.error_ratio",
                T0,
                0.5,
            ))])
            .await
            .unwrap();
        // The manual clock does not move; the loop evaluates on its (real) 50 ms tick: wait
        // for the alert to show up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while handle.alerts().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = call(
            &router,
            "GET",
            "/api/v1/alerting/alerts?status=firing",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["alerts"][0]["labels"]["alertname"], "HighErrorRatio");
        assert_eq!(body["alerts"][0]["muted"], true);
        assert_eq!(body["alerts"][0]["silenced_by"][0], id.as_str());

        let (status, body) =
            call(&router, "GET", "/api/v1/alerting/alerts?status=bogus", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        let (status, body) = call(
            &router,
            "DELETE",
            &format!("/api/v1/alerting/silences/{id}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["silence"]["state"], "expired");
        let (status, _) = call(&router, "DELETE", "/api/v1/alerting/silences/s-none", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, body) = call(&router, "GET", "/api/v1/alerting/silences", None).await;
        assert_eq!(body["silences"].as_array().unwrap().len(), 1);
        let (_, body) = call(
            &router,
            "GET",
            "/api/v1/alerting/alerts/history?limit=10",
            None,
        )
        .await;
        let events: Vec<&str> = body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event"].as_str().unwrap())
            .collect();
        assert!(events.contains(&"firing"), "{events:?}");
        let (status, body) = call(&router, "GET", "/api/v1/alerting/incidents", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["incidents"][0]["key"], "stage=svc/a");
        let (_, body) = call(&router, "GET", "/api/v1/alerting/receivers", None).await;
        assert_eq!(body["status"], "ready");

        stop.cancel();
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn https_receivers_are_supported() {
    // Nothing listens on the port: a TLS-capable client fails to connect, where a client
    // without TLS would refuse the https scheme itself.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = valid(&format!(
        "[[receivers]]\nkind='slack'\nname='chat'\nurl='https://{addr}/services/x'"
    ));
    let notifier = notify::Notifier::new(&config.receivers[0]);
    let client = reqwest::Client::new();
    let err = notifier
        .send(
            &client,
            "n-1",
            &serde_json::json!({"text": "hi"}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "connect", "{err}");
    assert!(err.is_retriable());
}
