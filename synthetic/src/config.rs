//! The `[synthetic]` section: probes, their schedules, where they inject and where they observe.
//!
//! A probe is one of three kinds, chosen by which sub-table it has:
//! - a *pipeline* probe: `[inject.kafka]` or `[inject.http]` plus `[observe.kafka]`,
//!   `[observe.elasticsearch]` or `[observe.http]`;
//! - an HTTP check: `[http_check]`;
//! - a TLS certificate expiry check: `[tls_check]`.
//!
//! [`SyntheticConfig::validate`] does every I/O-free check and names the key path of the first
//! problem (`probes[2].inject.kafka.topic`; the app prefixes `synthetic.`).

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::schedule::Schedule;
use crate::template::PayloadTemplate;

/// The default payload: a JSON object carrying the probe marker and the probe id, sequence
/// number and send time.
pub const DEFAULT_PAYLOAD: &str = r#"{"pipewarden_probe":true,"probe":"{{probe}}","probe_id":"{{probe_id}}","seq":{{seq}},"partition":{{partition}},"sent_ms":{{sent_ms}},"traceparent":"{{traceparent}}"}"#;

/// `[synthetic]`: every probe and the limits shared by them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// The probes (`[[synthetic.probes]]`). Default none: the prober does not run.
    pub probes: Vec<ProbeConfig>,
    /// Capacity, in results, of the queue from the probes to the store, alerting and the
    /// detector. Default 256.
    pub result_queue_capacity: usize,
    /// Capacity, in spans, of the queue of probe spans from the collector; spans beyond it are
    /// dropped and counted. Default 4096.
    pub span_queue_capacity: usize,
    /// Most probe runs awaiting their result per probe; a run beyond it is skipped and counted.
    /// Default 1000.
    pub max_pending_runs: usize,
    /// Sequence numbers per (probe, partition) remembered for duplicate and late-arrival
    /// accounting; arrivals older than this are counted as `stale`. Default 10000.
    pub sequence_window: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            probes: Vec::new(),
            result_queue_capacity: 256,
            span_queue_capacity: 4096,
            max_pending_runs: 1000,
            sequence_window: 10_000,
        }
    }
}

/// `[[synthetic.probes]]`: one probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Unique name (`[A-Za-z0-9_.-]`, at most 64 characters); the monitor id in results.
    pub name: String,
    /// Time between runs, humantime. Default `30s`. Ignored when `cron` is set.
    #[serde(with = "humantime_serde::option")]
    pub interval: Option<Duration>,
    /// Cron schedule (5 fields, or 6 with seconds, UTC) instead of `interval`.
    pub cron: Option<String>,
    /// How long a run waits for its events (and an HTTP/TLS check for its answer) before it is
    /// a `timeout`. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Stages expected to report a span for each probe event, in pipeline order (the stage names
    /// of the collector: `service.name`, or `service/value` with a stage attribute). Empty: no
    /// per-stage latency is expected. Default empty.
    pub stages: Vec<String>,
    /// After all events of a run arrived, how long the run still waits for spans of `stages`.
    /// Default `2s`.
    #[serde(with = "humantime_serde")]
    pub span_wait: Duration,
    /// Dead-man's switch: a probe that observes nothing, or an expected stage that sends no span,
    /// for this many schedule periods is a finding. 0 turns it off. Default 3.
    pub dead_man_intervals: u32,
    /// Payload template; placeholders `{{probe}}`, `{{probe_id}}`, `{{seq}}`, `{{partition}}`,
    /// `{{sent_ms}}`, `{{trace_id}}` and `{{traceparent}}`. Default: a JSON object with the
    /// marker field `"pipewarden_probe": true` and every placeholder.
    pub payload: String,
    /// Where the events are injected (pipeline probes).
    pub inject: InjectConfig,
    /// Where the events are observed (pipeline probes).
    pub observe: ObserveConfig,
    /// An HTTP endpoint check instead of a pipeline probe.
    pub http_check: Option<HttpCheckConfig>,
    /// A TLS certificate expiry check instead of a pipeline probe.
    pub tls_check: Option<TlsCheckConfig>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            interval: None,
            cron: None,
            timeout: Duration::from_secs(10),
            stages: Vec::new(),
            span_wait: Duration::from_secs(2),
            dead_man_intervals: 3,
            payload: DEFAULT_PAYLOAD.to_owned(),
            inject: InjectConfig::default(),
            observe: ObserveConfig::default(),
            http_check: None,
            tls_check: None,
        }
    }
}

/// `[synthetic.probes.inject]`: exactly one of its sub-tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectConfig {
    /// Produce to a Kafka topic.
    pub kafka: Option<KafkaInjectConfig>,
    /// POST to an HTTP endpoint.
    pub http: Option<HttpInjectConfig>,
}

/// `[synthetic.probes.inject.kafka]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaInjectConfig {
    /// Brokers, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Topic the events are produced to.
    pub topic: String,
    /// Partitions that get one event per run (sequence numbers are kept per partition). Empty:
    /// every partition of the topic, read from the metadata at start. Default empty.
    pub partitions: Vec<i32>,
    /// Attempts per event (with exponential backoff from 100 ms) before the run is `down`.
    /// Default 3.
    pub attempts: u32,
    /// Further librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, ...).
    pub properties: BTreeMap<String, String>,
}

/// `[synthetic.probes.inject.http]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpInjectConfig {
    /// URL the payload is POSTed to.
    pub url: String,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// `Content-Type` of the payload. Default `application/json`.
    pub content_type: Option<String>,
    /// Attempts (with exponential backoff from 100 ms) before the run is `down`. Default 3.
    pub attempts: u32,
}

/// `[synthetic.probes.observe]`: exactly one of its sub-tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserveConfig {
    /// Consume a Kafka topic with pipewarden's own consumer group.
    pub kafka: Option<KafkaObserveConfig>,
    /// Search an Elasticsearch/OpenSearch index for the probe id.
    pub elasticsearch: Option<ElasticsearchObserveConfig>,
    /// Poll an HTTP URL for the probe id.
    pub http: Option<HttpObserveConfig>,
}

/// How an observed Kafka record is recognised as a probe event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchBy {
    /// The `pipewarden-probe-id` header, else the payload field.
    #[default]
    Either,
    /// Only the `pipewarden-probe-id` header.
    Header,
    /// Only the payload field `id_field` (a JSON object).
    Payload,
}

/// `[synthetic.probes.observe.kafka]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaObserveConfig {
    /// Brokers, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Topic the events come out of.
    pub topic: String,
    /// Consumer group id (pipewarden's own; offsets are committed so lag tools see it).
    /// Default `pipewarden-probe-<name>`.
    pub group_id: Option<String>,
    /// How probe records are recognised. Default `either`.
    #[serde(rename = "match")]
    pub match_by: MatchBy,
    /// Payload field (dotted path in a JSON object) holding the probe id. Default `probe_id`.
    pub id_field: Option<String>,
    /// Further librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

/// `[synthetic.probes.observe.elasticsearch]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchObserveConfig {
    /// Base URL of the cluster.
    pub url: String,
    /// Index (or pattern) searched.
    pub index: String,
    /// Field holding the probe id, searched with a `term` query, so a keyword field (under
    /// dynamic mapping `probe_id.keyword`). Default `probe_id`. Every copy found counts: two
    /// documents with the same probe id are a duplicate.
    pub id_field: Option<String>,
    /// Time between searches for pending events; the latency resolution. Default `500ms`.
    #[serde(with = "humantime_serde::option")]
    pub poll_interval: Option<Duration>,
    /// Deletes the probe documents found (by `_index` and `_id`) once counted. Default false.
    pub cleanup: bool,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
}

/// `[synthetic.probes.observe.http]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpObserveConfig {
    /// URL polled with GET; `{{probe_id}}` is replaced by the probe id. The event is observed
    /// when the answer is 2xx and its body contains the probe id.
    pub url: String,
    /// Time between polls for pending events. Default `500ms`.
    #[serde(with = "humantime_serde::option")]
    pub poll_interval: Option<Duration>,
}

/// `[synthetic.probes.http_check]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpCheckConfig {
    /// URL requested.
    pub url: String,
    /// Method. Default `GET`.
    pub method: Option<String>,
    /// Status codes counted as up. Default any 2xx.
    pub expect_status: Vec<u16>,
    /// Regular expression the body must match. Default none.
    pub body_matches: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
}

/// `[synthetic.probes.tls_check]`: days left on the certificate an HTTPS endpoint presents.
/// The certificate is read whether or not it verifies (an expired or self-signed certificate
/// still gets its days counted); chain verification is not part of this check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsCheckConfig {
    /// `https://` URL requested.
    pub url: String,
    /// Fewer days left than this is `down`. Default 14.
    pub min_days_left: Option<f64>,
}

/// A validated `[synthetic]` section.
#[derive(Debug, Clone)]
pub struct ValidSyntheticConfig {
    /// Validated probes.
    pub probes: Vec<ValidProbeConfig>,
    /// Result queue capacity.
    pub result_queue_capacity: usize,
    /// Span queue capacity.
    pub span_queue_capacity: usize,
    /// Pending runs per probe.
    pub max_pending_runs: usize,
    /// Sequence window.
    pub sequence_window: u64,
}

impl ValidSyntheticConfig {
    /// Returns true when at least one probe is configured.
    pub fn enabled(&self) -> bool {
        !self.probes.is_empty()
    }
}

/// What a validated probe does.
#[derive(Debug, Clone)]
pub enum ProbeTarget {
    /// Inject events and observe them downstream.
    Pipeline {
        /// Where to inject.
        inject: ValidInject,
        /// Where to observe.
        observe: ValidObserve,
    },
    /// An HTTP endpoint check.
    HttpCheck(ValidHttpCheck),
    /// A TLS certificate expiry check.
    TlsCheck(ValidTlsCheck),
}

/// Validated injection target.
#[derive(Debug, Clone)]
pub enum ValidInject {
    /// Kafka.
    Kafka(KafkaInjectConfig),
    /// HTTP POST.
    Http(HttpInjectConfig),
}

/// Validated observation source.
#[derive(Debug, Clone)]
pub enum ValidObserve {
    /// Kafka consumer; the group id and id field are resolved.
    Kafka {
        /// The section.
        config: KafkaObserveConfig,
        /// Consumer group.
        group_id: String,
        /// Payload id field path.
        id_field: Vec<String>,
    },
    /// Elasticsearch search.
    Elasticsearch {
        /// The section.
        config: ElasticsearchObserveConfig,
        /// Id field.
        id_field: String,
        /// Poll interval.
        poll_interval: Duration,
    },
    /// HTTP poll.
    Http {
        /// The section.
        config: HttpObserveConfig,
        /// Poll interval.
        poll_interval: Duration,
    },
}

/// Validated HTTP check.
#[derive(Debug, Clone)]
pub struct ValidHttpCheck {
    /// URL.
    pub url: String,
    /// Method.
    pub method: reqwest::Method,
    /// Expected statuses (empty: any 2xx).
    pub expect_status: Vec<u16>,
    /// Body pattern.
    pub body_matches: Option<regex::Regex>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
}

/// Validated TLS check.
#[derive(Debug, Clone)]
pub struct ValidTlsCheck {
    /// `https://` URL.
    pub url: String,
    /// Days-left threshold.
    pub min_days_left: f64,
}

/// A validated probe.
#[derive(Debug, Clone)]
pub struct ValidProbeConfig {
    /// Name.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Run timeout.
    pub timeout: Duration,
    /// Expected stages, in order.
    pub stages: Vec<String>,
    /// Span wait after the events arrived.
    pub span_wait: Duration,
    /// Dead-man's switch periods (0: off).
    pub dead_man_intervals: u32,
    /// Compiled payload template.
    pub payload: PayloadTemplate,
    /// What it does.
    pub target: ProbeTarget,
}

fn err(path: String, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: path,
        problem: problem.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl SyntheticConfig {
    /// Checks every key without I/O.
    ///
    /// # Errors
    /// The first problem, naming its key path relative to `[synthetic]`.
    pub fn validate(&self) -> Result<ValidSyntheticConfig, ConfigError> {
        if self.result_queue_capacity == 0 {
            return Err(err("result_queue_capacity".into(), "must be at least 1"));
        }
        if self.span_queue_capacity == 0 {
            return Err(err("span_queue_capacity".into(), "must be at least 1"));
        }
        if self.max_pending_runs == 0 {
            return Err(err("max_pending_runs".into(), "must be at least 1"));
        }
        if self.sequence_window < 16 {
            return Err(err("sequence_window".into(), "must be at least 16"));
        }
        let mut probes = Vec::with_capacity(self.probes.len());
        for (i, probe) in self.probes.iter().enumerate() {
            let at = format!("probes[{i}]");
            if let Some(j) = self.probes[..i].iter().position(|p| p.name == probe.name) {
                return Err(err(
                    format!("{at}.name"),
                    format!("`{}` is already the name of probes[{j}]", probe.name),
                ));
            }
            probes.push(probe.validate(&at)?);
        }
        Ok(ValidSyntheticConfig {
            probes,
            result_queue_capacity: self.result_queue_capacity,
            span_queue_capacity: self.span_queue_capacity,
            max_pending_runs: self.max_pending_runs,
            sequence_window: self.sequence_window,
        })
    }
}

impl ProbeConfig {
    fn validate(&self, at: &str) -> Result<ValidProbeConfig, ConfigError> {
        if !valid_name(&self.name) {
            return Err(err(
                format!("{at}.name"),
                format!(
                    "`{}` must be 1-64 characters of letters, digits, `_`, `.` or `-`",
                    self.name
                ),
            ));
        }
        let schedule = match (&self.cron, self.interval) {
            (Some(_), Some(_)) => {
                return Err(err(
                    format!("{at}.cron"),
                    "set either `cron` or `interval`, not both",
                ));
            }
            (Some(expr), None) => {
                Schedule::cron(expr).map_err(|problem| err(format!("{at}.cron"), problem))?
            }
            (None, interval) => {
                let interval = interval.unwrap_or(Duration::from_secs(30));
                if interval < Duration::from_millis(100) {
                    return Err(err(format!("{at}.interval"), "must be at least 100ms"));
                }
                Schedule::Interval(interval)
            }
        };
        if self.timeout < Duration::from_millis(10) {
            return Err(err(format!("{at}.timeout"), "must be at least 10ms"));
        }
        if let Some(i) = self.stages.iter().position(String::is_empty) {
            return Err(err(format!("{at}.stages[{i}]"), "must not be empty"));
        }
        let payload = PayloadTemplate::parse(&self.payload)
            .map_err(|problem| err(format!("{at}.payload"), problem))?;
        let kinds = usize::from(self.http_check.is_some()) + usize::from(self.tls_check.is_some());
        let pipeline = self.inject.kafka.is_some()
            || self.inject.http.is_some()
            || self.observe.kafka.is_some()
            || self.observe.elasticsearch.is_some()
            || self.observe.http.is_some();
        if kinds + usize::from(pipeline) != 1 {
            return Err(err(
                at.to_owned(),
                "a probe needs exactly one of `inject` + `observe`, `http_check` or `tls_check`",
            ));
        }
        let target = if let Some(check) = &self.http_check {
            ProbeTarget::HttpCheck(validate_http_check(check, &format!("{at}.http_check"))?)
        } else if let Some(check) = &self.tls_check {
            let at = format!("{at}.tls_check");
            require_url(&check.url, &at, "url")?;
            if !check.url.starts_with("https://") {
                return Err(err(format!("{at}.url"), "must be an https:// URL"));
            }
            let min_days_left = check.min_days_left.unwrap_or(14.0);
            if !min_days_left.is_finite() || min_days_left < 0.0 {
                return Err(err(format!("{at}.min_days_left"), "must be a number >= 0"));
            }
            ProbeTarget::TlsCheck(ValidTlsCheck {
                url: check.url.clone(),
                min_days_left,
            })
        } else {
            ProbeTarget::Pipeline {
                inject: self.validate_inject(at)?,
                observe: self.validate_observe(at)?,
            }
        };
        Ok(ValidProbeConfig {
            name: self.name.clone(),
            schedule,
            timeout: self.timeout,
            stages: self.stages.clone(),
            span_wait: self.span_wait,
            dead_man_intervals: self.dead_man_intervals,
            payload,
            target,
        })
    }

    fn validate_inject(&self, at: &str) -> Result<ValidInject, ConfigError> {
        let at = format!("{at}.inject");
        match (&self.inject.kafka, &self.inject.http) {
            (Some(kafka), None) => {
                let at = format!("{at}.kafka");
                require(&kafka.bootstrap_servers, &at, "bootstrap_servers")?;
                require(&kafka.topic, &at, "topic")?;
                if let Some(i) = kafka.partitions.iter().position(|p| *p < 0) {
                    return Err(err(format!("{at}.partitions[{i}]"), "must not be negative"));
                }
                let mut kafka = kafka.clone();
                kafka.attempts = attempts(kafka.attempts, &at)?;
                Ok(ValidInject::Kafka(kafka))
            }
            (None, Some(http)) => {
                let at = format!("{at}.http");
                require_url(&http.url, &at, "url")?;
                let mut http = http.clone();
                http.attempts = attempts(http.attempts, &at)?;
                Ok(ValidInject::Http(http))
            }
            _ => Err(err(
                at,
                "needs exactly one of `[inject.kafka]` or `[inject.http]`",
            )),
        }
    }

    fn validate_observe(&self, at: &str) -> Result<ValidObserve, ConfigError> {
        let at = format!("{at}.observe");
        let o = &self.observe;
        let count = usize::from(o.kafka.is_some())
            + usize::from(o.elasticsearch.is_some())
            + usize::from(o.http.is_some());
        if count != 1 {
            return Err(err(
                at,
                "needs exactly one of `[observe.kafka]`, `[observe.elasticsearch]` or \
                 `[observe.http]`",
            ));
        }
        let poll = |value: Option<Duration>, at: &str| -> Result<Duration, ConfigError> {
            let value = value.unwrap_or(Duration::from_millis(500));
            if value < Duration::from_millis(10) {
                return Err(err(format!("{at}.poll_interval"), "must be at least 10ms"));
            }
            Ok(value)
        };
        if let Some(kafka) = &o.kafka {
            let at = format!("{at}.kafka");
            require(&kafka.bootstrap_servers, &at, "bootstrap_servers")?;
            require(&kafka.topic, &at, "topic")?;
            let id_field = kafka.id_field.clone().unwrap_or_else(|| "probe_id".into());
            if id_field.split('.').any(str::is_empty) {
                return Err(err(format!("{at}.id_field"), "must be a dotted path"));
            }
            let group_id = kafka
                .group_id
                .clone()
                .unwrap_or_else(|| format!("pipewarden-probe-{}", self.name));
            if group_id.is_empty() {
                return Err(err(format!("{at}.group_id"), "must not be empty"));
            }
            return Ok(ValidObserve::Kafka {
                config: kafka.clone(),
                group_id,
                id_field: id_field.split('.').map(str::to_owned).collect(),
            });
        }
        if let Some(es) = &o.elasticsearch {
            let at = format!("{at}.elasticsearch");
            require_url(&es.url, &at, "url")?;
            require(&es.index, &at, "index")?;
            let id_field = es.id_field.clone().unwrap_or_else(|| "probe_id".into());
            if id_field.is_empty() {
                return Err(err(format!("{at}.id_field"), "must not be empty"));
            }
            return Ok(ValidObserve::Elasticsearch {
                config: es.clone(),
                id_field,
                poll_interval: poll(es.poll_interval, &at)?,
            });
        }
        let http = o.http.clone().unwrap_or_default();
        let at = format!("{at}.http");
        require_url(&http.url, &at, "url")?;
        Ok(ValidObserve::Http {
            poll_interval: poll(http.poll_interval, &at)?,
            config: http,
        })
    }
}

fn require(value: &str, at: &str, key: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(err(format!("{at}.{key}"), "must be set"));
    }
    Ok(())
}

fn require_url(value: &str, at: &str, key: &str) -> Result<(), ConfigError> {
    require(value, at, key)?;
    let probe = value.replace("{{probe_id}}", "x");
    match reqwest::Url::parse(&probe) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => Err(err(
            format!("{at}.{key}"),
            format!("scheme `{}` is not http or https", url.scheme()),
        )),
        Err(e) => Err(err(
            format!("{at}.{key}"),
            format!("`{value}` is not a URL: {e}"),
        )),
    }
}

fn attempts(value: u32, at: &str) -> Result<u32, ConfigError> {
    match value {
        0 => Ok(3),
        1..=20 => Ok(value),
        _ => Err(err(format!("{at}.attempts"), "must be within 1..=20")),
    }
}

fn validate_http_check(check: &HttpCheckConfig, at: &str) -> Result<ValidHttpCheck, ConfigError> {
    require_url(&check.url, at, "url")?;
    let method = check.method.as_deref().unwrap_or("GET");
    let method = reqwest::Method::from_str(&method.to_ascii_uppercase())
        .map_err(|e| err(format!("{at}.method"), format!("`{method}`: {e}")))?;
    if let Some(i) = check
        .expect_status
        .iter()
        .position(|s| !(100..=599).contains(s))
    {
        return Err(err(
            format!("{at}.expect_status[{i}]"),
            "must be within 100..=599",
        ));
    }
    let body_matches = check
        .body_matches
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| err(format!("{at}.body_matches"), e.to_string()))?;
    Ok(ValidHttpCheck {
        url: check.url.clone(),
        method,
        expect_status: check.expect_status.clone(),
        body_matches,
        headers: check.headers.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SyntheticConfig {
        toml::from_str(text).unwrap()
    }

    const KAFKA: &str = r#"
        [[probes]]
        name = "orders"
        interval = "1s"
        [probes.inject.kafka]
        bootstrap_servers = "127.0.0.1:9092"
        topic = "in"
        [probes.observe.kafka]
        bootstrap_servers = "127.0.0.1:9092"
        topic = "out"
    "#;

    #[test]
    fn default_validates_and_is_off() {
        let valid = SyntheticConfig::default().validate().unwrap();
        assert!(!valid.enabled());
    }

    #[test]
    fn kafka_probe_validates_with_defaults_resolved() {
        let valid = parse(KAFKA).validate().unwrap();
        let probe = &valid.probes[0];
        assert_eq!(probe.schedule, Schedule::Interval(Duration::from_secs(1)));
        let ProbeTarget::Pipeline { inject, observe } = &probe.target else {
            panic!("pipeline probe expected");
        };
        let ValidInject::Kafka(kafka) = inject else {
            panic!("kafka inject expected")
        };
        assert_eq!(kafka.attempts, 3);
        let ValidObserve::Kafka {
            group_id, id_field, ..
        } = observe
        else {
            panic!("kafka observe expected")
        };
        assert_eq!(group_id, "pipewarden-probe-orders");
        assert_eq!(id_field, &["probe_id"]);
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            (
                KAFKA.replace("topic = \"in\"", "topic = \"\""),
                "probes[0].inject.kafka.topic",
            ),
            (
                KAFKA.replace("name = \"orders\"", "name = \"a b\""),
                "probes[0].name",
            ),
            (
                KAFKA.replace("interval = \"1s\"", "interval = \"1ms\""),
                "probes[0].interval",
            ),
            (
                KAFKA.replace("interval = \"1s\"", "cron = \"not a cron\""),
                "probes[0].cron",
            ),
            (
                KAFKA.replace("interval = \"1s\"", "payload = \"{{nope}}\""),
                "probes[0].payload",
            ),
            (
                KAFKA.replace(
                    "[probes.observe.kafka]",
                    "[probes.observe.http]\nurl = \"x\"\n[probes.observe.kafka]",
                ),
                "probes[0].observe",
            ),
            (
                format!(
                    "{KAFKA}\n{}",
                    KAFKA.replace("topic = \"out\"", "topic = \"o\"")
                ),
                "probes[1].name",
            ),
            (
                format!(
                    "{KAFKA}\n[[probes]]\nname = \"web\"\n[probes.http_check]\nurl = \"ftp://x\"\n"
                ),
                "probes[1].http_check.url",
            ),
            (
                "[[probes]]\nname = \"t\"\n[probes.tls_check]\nurl = \"http://x\"\n".to_owned(),
                "probes[0].tls_check.url",
            ),
            (
                KAFKA.replace("topic = \"in\"", "topic = \"in\"\npartitions = [0, -1]"),
                "probes[0].inject.kafka.partitions[1]",
            ),
            ("[[probes]]\nname = \"x\"\n".to_owned(), "probes[0]"),
        ];
        for (text, path) in cases {
            let err = parse(&text).validate().unwrap_err();
            assert_eq!(err.field, path, "{err} for:\n{text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = KAFKA.replace("topic = \"in\"", "topic = \"in\"\ntopik = \"x\"");
        assert!(toml::from_str::<SyntheticConfig>(&text).is_err());
    }

    #[test]
    fn checks_validate() {
        let text = r#"
            [[probes]]
            name = "web"
            cron = "*/5 * * * *"
            [probes.http_check]
            url = "http://127.0.0.1:1/health"
            expect_status = [200, 204]
            body_matches = "ok"
        "#;
        let valid = parse(text).validate().unwrap();
        let ProbeTarget::HttpCheck(check) = &valid.probes[0].target else {
            panic!("http check expected");
        };
        assert_eq!(check.method, reqwest::Method::GET);
        assert_eq!(check.expect_status, [200, 204]);
    }
}
