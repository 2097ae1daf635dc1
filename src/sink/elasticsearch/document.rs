//! The documents the sink writes: one [`EsDocument`] per anomaly, stage window, lag reading,
//! probe result or alert, with a deterministic `_id` so a retry or a replay after a crash is a
//! `409` on `create`, never a duplicate.
//!
//! Bodies use ECS names (`@timestamp`, `event.*`, `service.name`, `labels.*`, `observer.*`) plus
//! pipewarden's own fields under `pipewarden.*`; the templates in `templates/` map them.

use pipewarden_collector::StageWindow;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::anomaly::Anomaly;

use super::config::IndexMode;

/// The five kinds of document, each its own data stream (or family of dated indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Anomalies found by the detector (`logs-pipewarden.anomaly-<ns>`).
    Anomaly,
    /// Stage windows rolled up by the collector (`metrics-pipewarden.stage-<ns>`).
    Stage,
    /// Consumer lag readings (`metrics-pipewarden.lag-<ns>`).
    Lag,
    /// Synthetic probe results (`synthetics-pipewarden.probe-<ns>`).
    Probe,
    /// Alerts (`logs-pipewarden.alert-<ns>`).
    Alert,
}

impl IndexKind {
    /// Every kind, in a fixed order.
    pub const ALL: [IndexKind; 5] = [
        IndexKind::Anomaly,
        IndexKind::Stage,
        IndexKind::Lag,
        IndexKind::Probe,
        IndexKind::Alert,
    ];

    /// Returns the short name (`anomaly`, `stage`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Anomaly => "anomaly",
            IndexKind::Stage => "stage",
            IndexKind::Lag => "lag",
            IndexKind::Probe => "probe",
            IndexKind::Alert => "alert",
        }
    }

    /// Returns the data stream type (`logs`, `metrics`, `synthetics`).
    pub fn stream_type(self) -> &'static str {
        match self {
            IndexKind::Anomaly | IndexKind::Alert => "logs",
            IndexKind::Stage | IndexKind::Lag => "metrics",
            IndexKind::Probe => "synthetics",
        }
    }

    /// Returns the ECS `event.dataset` (`pipewarden.anomaly`, ...).
    pub fn dataset(self) -> String {
        format!("pipewarden.{}", self.as_str())
    }

    fn code(self) -> u8 {
        match self {
            IndexKind::Anomaly => 1,
            IndexKind::Stage => 2,
            IndexKind::Lag => 3,
            IndexKind::Probe => 4,
            IndexKind::Alert => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<IndexKind> {
        IndexKind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub(crate) fn to_code(self) -> u8 {
        self.code()
    }

    /// Returns the write target: the data stream name, or the dated index of `timestamp_ms`.
    pub fn target(self, mode: IndexMode, namespace: &str, timestamp_ms: i64) -> String {
        match mode {
            IndexMode::DataStream => {
                format!("{}-{}-{namespace}", self.stream_type(), self.dataset())
            }
            IndexMode::Index => {
                let (y, m, d) = civil_date(timestamp_ms);
                format!(
                    "pipewarden-{}-{namespace}-{y:04}.{m:02}.{d:02}",
                    self.as_str()
                )
            }
        }
    }
}

/// One document for Elasticsearch.
#[derive(Debug, Clone, PartialEq)]
pub struct EsDocument {
    /// Which stream or index family it goes to.
    pub index_kind: IndexKind,
    /// Deterministic `_id` (content hash of the identifying fields, or the probe id).
    pub id: String,
    /// Event time, Unix milliseconds (picks the dated index in index mode).
    pub timestamp_ms: i64,
    /// The document source.
    pub body: Value,
}

/// Returns a 128-bit hex id from `kind` and identifying `parts` (SHA-256, truncated).
pub fn content_id(kind: IndexKind, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str().as_bytes());
    for part in parts {
        // Length-prefixed so ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn service_of(stage: &str) -> &str {
    stage.split('/').next().unwrap_or(stage)
}

fn base(kind: IndexKind, event_kind: &str, timestamp_ms: i64) -> Value {
    json!({
        "@timestamp": rfc3339_millis(timestamp_ms),
        "event": {
            "kind": event_kind,
            "module": "pipewarden",
            "dataset": kind.dataset(),
        },
    })
}

fn merge(mut into: Value, from: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut into, from) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
    into
}

/// One consumer lag reading, as [`EsDocument::lag`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct LagReading<'a> {
    /// Cluster name from the config.
    pub cluster: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// Topic; empty for the group's total.
    pub topic: &'a str,
    /// Partition; `None` for the group's total.
    pub partition: Option<i32>,
    /// Lag in messages.
    pub lag_messages: i64,
    /// Lag in seconds (age of the next message to consume).
    pub lag_seconds: f64,
    /// Verdict (`OK`, `WARN`, `STALL`, `STOP`, `REWIND`, ...).
    pub status: &'a str,
    /// Time of the reading, Unix milliseconds.
    pub timestamp_ms: i64,
}

impl EsDocument {
    /// Builds a document from parts; `id` must be deterministic for the content.
    pub fn new(index_kind: IndexKind, id: String, timestamp_ms: i64, body: Value) -> Self {
        Self {
            index_kind,
            id,
            timestamp_ms,
            body,
        }
    }

    /// An anomaly; the id is the hash of series, time, model and model version.
    pub fn from_anomaly(a: &Anomaly) -> Self {
        let kind = IndexKind::Anomaly;
        let id = content_id(
            kind,
            &[
                &a.series_key,
                &a.timestamp_ms.to_string(),
                &a.model,
                &a.model_version.to_string(),
            ],
        );
        let body = merge(
            base(kind, "event", a.timestamp_ms),
            json!({
                "event": {
                    "kind": "event",
                    "module": "pipewarden",
                    "dataset": kind.dataset(),
                    "category": ["process"],
                    "type": ["info"],
                    "severity": a.score.round() as i64,
                },
                "service": {"name": service_of(&a.stage)},
                "message": format!(
                    "{} on {}: {} (typical {}, score {:.0})",
                    a.name, a.stage, a.actual, a.typical, a.score
                ),
                "pipewarden": {
                    "stage": a.stage,
                    "anomaly": {
                        "series_key": a.series_key,
                        "name": a.name,
                        "model": a.model,
                        "model_version": a.model_version,
                        "score": a.score,
                        "actual": a.actual,
                        "typical": a.typical,
                        "lower": a.lower,
                        "upper": a.upper,
                        "feature": a.feature,
                        "direction": a.direction,
                        "continuing": a.continuing,
                    },
                },
            }),
        );
        Self::new(kind, id, a.timestamp_ms, body)
    }

    /// A stage window; `@timestamp` is the window end, the id the hash of stage and window.
    pub fn from_stage_window(w: &StageWindow) -> Self {
        let kind = IndexKind::Stage;
        let id = content_id(
            kind,
            &[
                &w.stage,
                &w.window_start_ms.to_string(),
                &w.window_end_ms.to_string(),
            ],
        );
        let by_severity: serde_json::Map<String, Value> = w
            .logs_by_severity
            .iter()
            .map(|(sev, n)| (sev.to_ascii_lowercase(), json!(n)))
            .collect();
        let error_ratio = if w.spans == 0 {
            Value::Null
        } else {
            json!(w.span_errors as f64 / w.spans as f64)
        };
        let body = merge(
            base(kind, "metric", w.window_end_ms),
            json!({
                "service": {"name": service_of(&w.stage)},
                "pipewarden": {
                    "stage": w.stage,
                    "window": {
                        "start": rfc3339_millis(w.window_start_ms),
                        "end": rfc3339_millis(w.window_end_ms),
                        "duration_ms": w.window_end_ms - w.window_start_ms,
                    },
                    "spans": {"count": w.spans, "errors": w.span_errors, "error_ratio": error_ratio},
                    "latency_ms": {
                        "p50": w.latency_p50_ms, "p95": w.latency_p95_ms, "p99": w.latency_p99_ms,
                    },
                    "metric_points": w.metric_points,
                    "log_records": {"count": w.log_records, "by_severity": by_severity},
                },
            }),
        );
        Self::new(kind, id, w.window_end_ms, body)
    }

    /// A consumer lag reading of one group on one topic partition (`partition` `None` = the
    /// group's total); the id is the hash of cluster, group, topic, partition and time.
    pub fn lag(reading: &LagReading<'_>) -> Self {
        let LagReading {
            cluster,
            group,
            topic,
            partition,
            lag_messages,
            lag_seconds,
            status,
            timestamp_ms,
        } = *reading;
        let kind = IndexKind::Lag;
        let partition_text = partition.map(|p| p.to_string()).unwrap_or_default();
        let id = content_id(
            kind,
            &[
                cluster,
                group,
                topic,
                &partition_text,
                &timestamp_ms.to_string(),
            ],
        );
        let body = merge(
            base(kind, "metric", timestamp_ms),
            json!({
                "service": {"name": group},
                "labels": {"kafka_cluster": cluster},
                "pipewarden": {"lag": {
                    "cluster": cluster, "group": group, "topic": topic,
                    "partition": partition, "messages": lag_messages,
                    "seconds": lag_seconds, "status": status,
                }},
            }),
        );
        Self::new(kind, id, timestamp_ms, body)
    }

    /// A synthetic probe run, shaped like Elastic Synthetics/Heartbeat documents
    /// (`monitor.id`, `monitor.status` up/down, `monitor.duration.us`, `event.duration` in ns)
    /// plus pipewarden's own `pipewarden.probe.*` fields from `details`; the run id (a
    /// deterministic `<probe>-<instance>-<seq>`) is the document id.
    pub fn probe(
        run_id: &str,
        probe: &str,
        monitor_type: &str,
        timestamp_ms: i64,
        up: bool,
        duration_ms: Option<f64>,
        details: Value,
    ) -> Self {
        let kind = IndexKind::Probe;
        let duration_us = duration_ms.map(|ms| (ms * 1000.0).round() as i64);
        let mut probe_fields = json!({ "id": run_id, "success": up, "latency_ms": duration_ms });
        if let (Value::Object(fields), Value::Object(extra)) = (&mut probe_fields, details) {
            fields.extend(extra);
        }
        let message = probe_fields["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let body = merge(
            base(kind, "event", timestamp_ms),
            json!({
                "event": {
                    "kind": "event", "module": "pipewarden", "dataset": kind.dataset(),
                    "outcome": if up { "success" } else { "failure" },
                    "duration": duration_us.map(|us| us * 1000),
                },
                "monitor": {
                    "id": probe, "name": probe, "type": monitor_type,
                    "status": if up { "up" } else { "down" },
                    "check_group": run_id,
                    "duration": {"us": duration_us},
                },
                "message": message,
                "pipewarden": {"probe": probe_fields},
            }),
        );
        Self::new(kind, run_id.to_owned(), timestamp_ms, body)
    }

    /// An alert state change; the id is the hash of the alert id, state and time.
    pub fn alert(
        alert_id: &str,
        rule: &str,
        state: &str,
        severity: &str,
        timestamp_ms: i64,
        message: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let kind = IndexKind::Alert;
        let id = content_id(kind, &[alert_id, state, &timestamp_ms.to_string()]);
        let body = merge(
            base(kind, "alert", timestamp_ms),
            json!({
                "message": message,
                "labels": labels,
                "pipewarden": {"alert": {
                    "id": alert_id, "rule": rule, "state": state, "severity": severity,
                }},
            }),
        );
        Self::new(kind, id, timestamp_ms, body)
    }
}

/// Returns `(year, month, day)` (UTC) of a Unix-milliseconds time.
pub(crate) fn civil_date(timestamp_ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let days = timestamp_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Returns `timestamp_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_millis(timestamp_ms: i64) -> String {
    let (y, m, d) = civil_date(timestamp_ms);
    let ms_of_day = timestamp_ms.rem_euclid(86_400_000);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly() -> Anomaly {
        Anomaly {
            id: 0,
            timestamp_ms: 1_700_000_000_000,
            series_key: "svc/a|span.count".into(),
            stage: "svc/a".into(),
            name: "span.count".into(),
            model: "robust_baseline".into(),
            model_version: 1,
            score: 91.4,
            actual: 10.0,
            typical: 100.0,
            lower: 80.0,
            upper: 120.0,
            feature: "span.count".into(),
            direction: "down".into(),
            continuing: false,
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = EsDocument::from_anomaly(&anomaly());
        let b = EsDocument::from_anomaly(&anomaly());
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let mut other = anomaly();
        other.timestamp_ms += 1;
        assert_ne!(a.id, EsDocument::from_anomaly(&other).id);
        assert_ne!(
            content_id(IndexKind::Lag, &["ab", "c"]),
            content_id(IndexKind::Lag, &["a", "bc"])
        );
        assert_ne!(
            content_id(IndexKind::Lag, &["a"]),
            content_id(IndexKind::Stage, &["a"])
        );
    }

    #[test]
    fn anomaly_body_has_ecs_and_own_fields() {
        let doc = EsDocument::from_anomaly(&anomaly());
        assert_eq!(doc.body["@timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(doc.body["event"]["dataset"], "pipewarden.anomaly");
        assert_eq!(doc.body["service"]["name"], "svc");
        assert_eq!(doc.body["pipewarden"]["anomaly"]["score"], 91.4);
    }

    #[test]
    fn lag_readings_carry_messages_seconds_and_status() {
        let reading = LagReading {
            cluster: "main",
            group: "billing",
            topic: "orders",
            partition: Some(3),
            lag_messages: 42,
            lag_seconds: 7.5,
            status: "WARN",
            timestamp_ms: 1_700_000_000_000,
        };
        let doc = EsDocument::lag(&reading);
        let lag = &doc.body["pipewarden"]["lag"];
        assert_eq!(lag["messages"], 42);
        assert_eq!(lag["seconds"], 7.5);
        assert_eq!(lag["status"], "WARN");
        assert_eq!(lag["partition"], 3);
        assert_eq!(doc.id, EsDocument::lag(&reading).id, "deterministic id");
        let total = EsDocument::lag(&LagReading {
            topic: "",
            partition: None,
            ..reading
        });
        assert_ne!(doc.id, total.id);
        assert!(total.body["pipewarden"]["lag"]["partition"].is_null());
    }

    #[test]
    fn targets_follow_the_naming_convention() {
        let t = 1_700_000_000_000;
        assert_eq!(
            IndexKind::Anomaly.target(IndexMode::DataStream, "default", t),
            "logs-pipewarden.anomaly-default"
        );
        assert_eq!(
            IndexKind::Probe.target(IndexMode::DataStream, "prod", t),
            "synthetics-pipewarden.probe-prod"
        );
        assert_eq!(
            IndexKind::Stage.target(IndexMode::Index, "default", t),
            "pipewarden-stage-default-2023.11.14"
        );
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(rfc3339_millis(1_234), "1970-01-01T00:00:01.234Z");
    }

    #[test]
    fn kind_codes_round_trip() {
        for kind in IndexKind::ALL {
            assert_eq!(IndexKind::from_code(kind.to_code()), Some(kind));
        }
    }
}
