//! Component templates, index templates and (data-stream mode) the ILM policy, installed at
//! start with `PUT` (idempotent: a restart overwrites them with the same content); and the
//! retention job of index mode, which deletes dated indices older than the retention.
//!
//! Names: component templates `pipewarden-ecs@mappings` and `pipewarden.<kind>@mappings`;
//! in data-stream mode index templates `<type>-pipewarden.<kind>-<namespace>` over the data
//! stream of the same name and the ILM policy `pipewarden-<namespace>`; in index mode index
//! templates `pipewarden-<kind>-<namespace>` over `pipewarden-<kind>-<namespace>-*`.

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::config::IndexMode;
use super::document::{IndexKind, civil_date};

const ECS: &str = include_str!("templates/ecs.json");
const ANOMALY: &str = include_str!("templates/anomaly.json");
const STAGE: &str = include_str!("templates/stage.json");
const LAG: &str = include_str!("templates/lag.json");
const PROBE: &str = include_str!("templates/probe.json");
const ALERT: &str = include_str!("templates/alert.json");
const DEAD_LETTER: &str = include_str!("templates/dead_letter.json");
const ILM_POLICY: &str = include_str!("templates/ilm-policy.json");

/// Name of the dataset that receives dead letters.
pub const DEAD_LETTER_DATASET: &str = "dead_letter";

/// Bumped when a template changes; stored in `_meta.version`.
const TEMPLATE_VERSION: u32 = 1;

/// One family of documents: a kind, or the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Kind(IndexKind),
    DeadLetter,
}

impl Family {
    pub(crate) const ALL: [Family; 6] = [
        Family::Kind(IndexKind::Anomaly),
        Family::Kind(IndexKind::Stage),
        Family::Kind(IndexKind::Lag),
        Family::Kind(IndexKind::Probe),
        Family::Kind(IndexKind::Alert),
        Family::DeadLetter,
    ];

    fn name(self) -> &'static str {
        match self {
            Family::Kind(kind) => kind.as_str(),
            Family::DeadLetter => DEAD_LETTER_DATASET,
        }
    }

    fn stream_type(self) -> &'static str {
        match self {
            Family::Kind(kind) => kind.stream_type(),
            Family::DeadLetter => "logs",
        }
    }

    fn mappings(self) -> &'static str {
        match self {
            Family::Kind(IndexKind::Anomaly) => ANOMALY,
            Family::Kind(IndexKind::Stage) => STAGE,
            Family::Kind(IndexKind::Lag) => LAG,
            Family::Kind(IndexKind::Probe) => PROBE,
            Family::Kind(IndexKind::Alert) => ALERT,
            Family::DeadLetter => DEAD_LETTER,
        }
    }

    fn component_name(self) -> String {
        format!("pipewarden.{}@mappings", self.name())
    }

    /// Data stream name or dated index for a document of this family.
    pub(crate) fn target(self, mode: IndexMode, namespace: &str, timestamp_ms: i64) -> String {
        match mode {
            IndexMode::DataStream => format!(
                "{}-pipewarden.{}-{namespace}",
                self.stream_type(),
                self.name()
            ),
            IndexMode::Index => {
                let (y, m, d) = civil_date(timestamp_ms);
                format!(
                    "pipewarden-{}-{namespace}-{y:04}.{m:02}.{d:02}",
                    self.name()
                )
            }
        }
    }

    fn index_template(self, mode: IndexMode, namespace: &str) -> (String, Value) {
        let composed_of = json!(["pipewarden-ecs@mappings", self.component_name()]);
        let meta = json!({"managed_by": "pipewarden", "version": TEMPLATE_VERSION});
        match mode {
            IndexMode::DataStream => {
                let name = self.target(mode, namespace, 0);
                let body = json!({
                    "index_patterns": [format!("{name}*")],
                    "data_stream": {},
                    "composed_of": composed_of,
                    "priority": 250,
                    "template": {"settings": {"index.lifecycle.name": ilm_policy_name(namespace)}},
                    "_meta": meta,
                });
                (name, body)
            }
            IndexMode::Index => {
                let name = format!("pipewarden-{}-{namespace}", self.name());
                let body = json!({
                    "index_patterns": [format!("{name}-*")],
                    "composed_of": composed_of,
                    "priority": 250,
                    "_meta": meta,
                });
                (name, body)
            }
        }
    }
}

/// Returns the ILM policy name of a namespace.
pub fn ilm_policy_name(namespace: &str) -> String {
    format!("pipewarden-{namespace}")
}

/// Returns every `(path, body)` PUT at install, in order (components before index templates).
pub(crate) fn install_requests(
    mode: IndexMode,
    namespace: &str,
    retention: Duration,
) -> Result<Vec<(String, Value)>, String> {
    let parse = |name: &str, text: &str| {
        serde_json::from_str::<Value>(text).map_err(|err| format!("template {name}: {err}"))
    };
    let mut out = Vec::new();
    if mode == IndexMode::DataStream {
        let retention_days = retention.as_secs().div_ceil(86_400).max(1);
        let policy = ILM_POLICY.replace("{{retention}}", &format!("{retention_days}d"));
        out.push((
            format!("/_ilm/policy/{}", ilm_policy_name(namespace)),
            parse("ilm-policy", &policy)?,
        ));
    }
    out.push((
        "/_component_template/pipewarden-ecs@mappings".to_owned(),
        parse("ecs", ECS)?,
    ));
    for family in Family::ALL {
        out.push((
            format!("/_component_template/{}", family.component_name()),
            parse(family.name(), family.mappings())?,
        ));
    }
    for family in Family::ALL {
        let (name, body) = family.index_template(mode, namespace);
        out.push((format!("/_index_template/{name}"), body));
    }
    Ok(out)
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

/// Sends one JSON request; returns the status and the body (Null when not JSON).
pub(crate) async fn send_json(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let response = client
        .send::<Vec<u8>, ()>(method, path, json_headers(), None, bytes, Some(timeout))
        .await
        .map_err(|err| format!("{path}: {err}"))?;
    let status = response.status_code().as_u16();
    let text = response
        .text()
        .await
        .map_err(|err| format!("{path}: {err}"))?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Installs the ILM policy (data-stream mode) and every template.
///
/// # Errors
/// The first request the cluster refused, with its status and answer.
pub async fn install(
    client: &Elasticsearch,
    mode: IndexMode,
    namespace: &str,
    retention: Duration,
    timeout: Duration,
) -> Result<(), String> {
    for (path, body) in install_requests(mode, namespace, retention)? {
        let (status, answer) = send_json(client, Method::Put, &path, Some(&body), timeout).await?;
        if !(200..300).contains(&status) {
            let answer = answer.to_string();
            return Err(format!(
                "PUT {path} answered {status}: {}",
                &answer[..answer.len().min(500)]
            ));
        }
    }
    Ok(())
}

/// Returns the date (`(y, m, d)`) of a dated pipewarden index of `namespace`, if it is one.
pub(crate) fn dated_index_day(index: &str, namespace: &str) -> Option<(i64, u32, u32)> {
    let rest = index.strip_prefix("pipewarden-")?;
    let (head, date) = rest.rsplit_once('-')?;
    head.strip_suffix(namespace)?.strip_suffix('-')?;
    let mut parts = date.split('.');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    (parts.next().is_none() && date.len() == 10).then_some((y, m, d))
}

/// Returns the dated indices in `indices` whose whole day ended more than `retention` before
/// `now_ms`.
pub(crate) fn expired_indices(
    indices: &[String],
    namespace: &str,
    retention: Duration,
    now_ms: i64,
) -> Vec<String> {
    let cutoff = civil_date(now_ms - retention.as_millis() as i64);
    indices
        .iter()
        .filter(|name| dated_index_day(name, namespace).is_some_and(|day| day < cutoff))
        .cloned()
        .collect()
}

/// Deletes the expired dated indices of `namespace` (index mode's retention job).
///
/// # Errors
/// When listing or a deletion fails.
pub async fn delete_expired_indices(
    client: &Elasticsearch,
    namespace: &str,
    retention: Duration,
    now_ms: i64,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let path = format!("/_cat/indices/pipewarden-*-{namespace}-*?format=json&h=index");
    let (status, answer) = send_json(client, Method::Get, &path, None, timeout).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    if !(200..300).contains(&status) {
        return Err(format!("GET {path} answered {status}"));
    }
    let names: Vec<String> = answer
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["index"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let expired = expired_indices(&names, namespace, retention, now_ms);
    for index in &expired {
        let (status, _) =
            send_json(client, Method::Delete, &format!("/{index}"), None, timeout).await?;
        if !(200..300).contains(&status) && status != 404 {
            return Err(format!("DELETE /{index} answered {status}"));
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_json_and_maps_timestamp() {
        for mode in [IndexMode::DataStream, IndexMode::Index] {
            let requests = install_requests(mode, "default", Duration::from_secs(86_400)).unwrap();
            let ecs = &requests
                .iter()
                .find(|(p, _)| p.ends_with("pipewarden-ecs@mappings"))
                .unwrap()
                .1;
            assert_eq!(
                ecs["template"]["mappings"]["properties"]["@timestamp"]["type"],
                "date"
            );
            let templates: Vec<_> = requests
                .iter()
                .filter(|(p, _)| p.starts_with("/_index_template/"))
                .collect();
            assert_eq!(templates.len(), 6);
        }
    }

    #[test]
    fn data_stream_mode_has_ilm_and_stream_names() {
        let requests = install_requests(
            IndexMode::DataStream,
            "prod",
            Duration::from_secs(7 * 86_400),
        )
        .unwrap();
        let (path, policy) = &requests[0];
        assert_eq!(path, "/_ilm/policy/pipewarden-prod");
        assert_eq!(policy["policy"]["phases"]["delete"]["min_age"], "7d");
        let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
        for name in [
            "logs-pipewarden.anomaly-prod",
            "metrics-pipewarden.stage-prod",
            "metrics-pipewarden.lag-prod",
            "synthetics-pipewarden.probe-prod",
            "logs-pipewarden.alert-prod",
        ] {
            assert!(
                paths.contains(&format!("/_index_template/{name}").as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn retention_picks_only_old_dated_indices_of_the_namespace() {
        let day = 86_400_000;
        let now = 1_700_000_000_000; // 2023-11-14
        let names: Vec<String> = [
            "pipewarden-anomaly-default-2023.11.14",
            "pipewarden-anomaly-default-2023.11.12",
            "pipewarden-anomaly-default-2023.11.13",
            "pipewarden-stage-default-2023.10.01",
            "pipewarden-stage-other-2023.10.01",
            "pipewarden-stage-default-latest",
            "unrelated-2023.10.01",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let expired = expired_indices(&names, "default", Duration::from_millis(day as u64), now);
        assert_eq!(
            expired,
            vec![
                "pipewarden-anomaly-default-2023.11.12".to_owned(),
                "pipewarden-stage-default-2023.10.01".to_owned()
            ]
        );
    }
}
