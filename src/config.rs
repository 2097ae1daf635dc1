//! The `pipewarden.toml` configuration: one file whose sections mirror the crates.
//!
//! Loading renders `${VAR}` / `${VAR:-default}` from the environment, parses TOML, applies
//! `PIPEWARDEN_SECTION__KEY=value` overrides (the value is read as a TOML value when it parses as
//! one, as a string otherwise), then validates. No file means all defaults: embedded store and
//! localhost listeners. Every error names the key path it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pipewarden_collector::{CollectorConfig, ValidCollectorConfig};

use crate::alert::{AlertConfig, ValidAlertConfig};
use crate::sink::elasticsearch::{
    ElasticsearchConfig, RedactionConfig, Redactor, ValidElasticsearchConfig,
};
use serde::Deserialize;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PIPEWARDEN_";

/// Approximate in-memory size of one series point in a queued batch, in bytes, used to check the
/// configured limits against [`Config::memory_budget_bytes`].
const APPROX_POINT_BYTES: u64 = 256;

/// Approximate detector state per series, in bytes (the detector reports the live figure in
/// `pipewarden_detector_series_state_bytes`).
const APPROX_SERIES_BYTES: u64 = 5120;

/// A configuration problem, naming the key path it is about.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {problem}")]
pub struct ConfigError {
    /// Key path, e.g. `collector.otlp.grpc_address` (empty when the file itself is unreadable).
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Upper bound, in bytes, for the memory the configured queues and caps may hold (OTLP
    /// in-flight bytes + pipeline and store queues). Validation refuses limits that could exceed
    /// it. Default 768 MiB.
    pub memory_budget_bytes: u64,
    /// OTLP receivers and signal derivation.
    pub collector: CollectorConfig,
    /// Online anomaly scoring of every derived series.
    pub detector: DetectorConfig,
    /// Queues between the collector, the detector and the store.
    pub pipeline: PipelineConfig,
    /// The embedded local store.
    pub store: StoreConfig,
    /// JSON API, web UI and Prometheus `/metrics`.
    pub web: WebConfig,
    /// Alert rules, routing, silences and receivers.
    pub alert: AlertConfig,
    /// Sinks besides the local store.
    pub sink: SinkConfig,
    /// PII redaction of log records before the local store keeps them (on by default:
    /// e-mail, IPv4/IPv6, card numbers, tokens). The Elasticsearch sink has its own
    /// `[sink.elasticsearch.redaction]` with the same keys.
    pub redaction: RedactionConfig,
    /// `[synthetic]`: synthetic probes through the pipeline. Default none.
    pub synthetic: pipewarden_synthetic::SyntheticConfig,
}

/// `[sink]`: where results go besides the local store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `[sink.elasticsearch]`: anomalies, stage figures and lag to Elasticsearch. Default off.
    pub elasticsearch: ElasticsearchConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            memory_budget_bytes: 768 * 1024 * 1024,
            collector: CollectorConfig::default(),
            detector: DetectorConfig::default(),
            pipeline: PipelineConfig::default(),
            store: StoreConfig::default(),
            web: WebConfig::default(),
            alert: AlertConfig::default(),
            sink: SinkConfig::default(),
            redaction: RedactionConfig::default(),
            synthetic: pipewarden_synthetic::SyntheticConfig::default(),
        }
    }
}

/// Longest `detector.min_point_interval`.
const MAX_MIN_POINT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `[detector]`: the online scorer applied to every derived series.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Score (0-100) at or above which a point is stored as an anomaly. Default 70.
    pub alert_threshold: f64,
    /// Most series scored at once; the least recently updated is evicted past it (about 5 KiB
    /// each). Default 20000.
    pub max_series: usize,
    /// Points a series must see before it is scored. Default 20.
    pub warmup_points: usize,
    /// Points in each series' rolling window (median/MAD baseline). Default 64.
    pub window_points: usize,
    /// Least time between two scored points of a series (by their timestamps, to the
    /// millisecond): a point closer than that to its series' last scored point is stored but
    /// not scored (counted in `pipewarden_detector_points_thinned`). It bounds the detector's
    /// work to `max_series` points per interval whatever rate senders export at. At most 1 day;
    /// 0 (the default) scores every point.
    #[serde(with = "humantime_serde")]
    pub min_point_interval: Duration,
    /// `[detector.logs]`: log templates, template rates and log sessions.
    pub logs: crate::detect::config::LogDetectorConfig,
    /// `[detector.schema]`: schema drift of structured log records.
    pub schema: crate::detect::config::SchemaDriftConfig,
    /// `[detector.embeddings]`: outliers and drift of vectors carried by log records.
    pub embeddings: crate::detect::config::EmbeddingConfig,
    /// `[detector.multivariate]`: each stage's window figures scored together.
    pub multivariate: crate::detect::stages::MultivariateConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            alert_threshold: 70.0,
            max_series: 20_000,
            warmup_points: 20,
            window_points: 64,
            min_point_interval: Duration::ZERO,
            logs: Default::default(),
            schema: Default::default(),
            embeddings: Default::default(),
            multivariate: Default::default(),
        }
    }
}

/// `[pipeline]`: bounded queues inside the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity, in batches, of the queue from the collector to the detector and of the queue
    /// from the detector to the store. Memory is about capacity x batch size. Default 64.
    pub queue_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { queue_capacity: 64 }
    }
}

/// `[store]`: the embedded SQLite store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the database (created when missing). Default `./pipewarden-data`.
    pub path: PathBuf,
    /// Most batches written in one transaction. Default 64.
    pub max_batches_per_transaction: usize,
    /// Points, log records and anomalies older than this are deleted (checked hourly).
    /// Default `7d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Most raw log records stored per second (a token bucket with one second of burst); the
    /// rest are still counted in every stage figure and log series, and counted in
    /// `pipewarden_store_dropped_rows_total{reason="log_rate_limit"}`. 0 stores every record.
    /// Default 5000.
    pub max_log_records_per_second: u64,
    /// Width of the time buckets that series points are stored in: every point of a series in
    /// one bucket is folded into one row (count, sum, min, max, last value, highest score), so
    /// the store's cost follows the number of series, not the point rate. The detector still
    /// scores every point and anomalies keep their exact time and value. `1ms` keeps every
    /// point apart (at most one per millisecond). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub point_resolution: Duration,
    /// How long the writer gathers batches after the first one before committing them in one
    /// transaction (or sooner, at `max_batches_per_transaction`): fewer, larger commits at low
    /// rates. What is gathered is also written at shutdown. `0s` commits each arrival at once.
    /// Default `0s`; at most `10s`.
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
    /// How often the folded series points are written out, and so how stale the newest bucket
    /// read at the API may be: one upsert per series and bucket each time, whatever the point
    /// rate. Everything folded is written at shutdown. Default `5s`; between `100ms` and `1h`.
    #[serde(with = "humantime_serde")]
    pub point_flush_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./pipewarden-data"),
            max_batches_per_transaction: 64,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_log_records_per_second: 5000,
            point_resolution: Duration::from_secs(10),
            commit_delay: Duration::ZERO,
            point_flush_interval: Duration::from_secs(5),
        }
    }
}

/// `[web]`: the HTTP server for the JSON API, the UI and `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Listen address. Default `127.0.0.1:9464`.
    pub address: String,
    /// Most rows a list endpoint returns. Default 1000.
    pub max_rows: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9464".to_owned(),
            max_rows: 1000,
        }
    }
}

/// A configuration that passed every I/O-free check.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Collector section, validated by the collector crate.
    pub collector: ValidCollectorConfig,
    /// Detector section.
    pub detector: DetectorConfig,
    /// Pipeline queues.
    pub pipeline: PipelineConfig,
    /// Store section.
    pub store: StoreConfig,
    /// Web listen address.
    pub web_address: SocketAddr,
    /// Web section.
    pub web: WebConfig,
    /// Alerting section.
    pub alert: ValidAlertConfig,
    /// Elasticsearch sink section.
    pub elasticsearch: ValidElasticsearchConfig,
    /// Compiled redaction rules for the local store.
    pub redactor: Redactor,
    /// Synthetic probes.
    pub synthetic: pipewarden_synthetic::ValidSyntheticConfig,
}

impl Config {
    /// Checks every key without I/O.
    ///
    /// # Errors
    /// The first problem found, naming its key path.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        let collector = self
            .collector
            .validate()
            .map_err(|err| ConfigError::new(format!("collector.{}", err.field), err.problem))?;
        let d = &self.detector;
        if !(0.0..=100.0).contains(&d.alert_threshold) || d.alert_threshold.is_nan() {
            return Err(ConfigError::new(
                "detector.alert_threshold",
                format!("must be within 0..=100, got {}", d.alert_threshold),
            ));
        }
        if d.max_series == 0 {
            return Err(ConfigError::new(
                "detector.max_series",
                "must be at least 1",
            ));
        }
        if d.window_points < 8 {
            return Err(ConfigError::new(
                "detector.window_points",
                format!("must be at least 8, got {}", d.window_points),
            ));
        }
        if d.warmup_points < 3 {
            return Err(ConfigError::new(
                "detector.warmup_points",
                format!("must be at least 3, got {}", d.warmup_points),
            ));
        }
        if d.min_point_interval > MAX_MIN_POINT_INTERVAL {
            return Err(ConfigError::new(
                "detector.min_point_interval",
                format!(
                    "must be at most 1 day, got {}",
                    humantime::format_duration(d.min_point_interval)
                ),
            ));
        }
        crate::detect::config::validate(d)?;
        if self.pipeline.queue_capacity == 0 {
            return Err(ConfigError::new(
                "pipeline.queue_capacity",
                "must be at least 1",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(ConfigError::new("store.path", "must not be empty"));
        }
        if self.store.max_batches_per_transaction == 0 {
            return Err(ConfigError::new(
                "store.max_batches_per_transaction",
                "must be at least 1",
            ));
        }
        if self.store.retention < Duration::from_secs(60) {
            return Err(ConfigError::new("store.retention", "must be at least 1m"));
        }
        if self.store.point_resolution < Duration::from_millis(1)
            || self.store.point_resolution > Duration::from_secs(3600)
        {
            return Err(ConfigError::new(
                "store.point_resolution",
                "must be between 1ms and 1h",
            ));
        }
        if self.store.commit_delay > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "store.commit_delay",
                "must be at most 10s",
            ));
        }
        if self.store.point_flush_interval < Duration::from_millis(100)
            || self.store.point_flush_interval > Duration::from_secs(3600)
        {
            return Err(ConfigError::new(
                "store.point_flush_interval",
                "must be between 100ms and 1h",
            ));
        }
        let web_address: SocketAddr = self.web.address.parse().map_err(|err| {
            ConfigError::new(
                "web.address",
                format!("`{}` is not an address: {err}", self.web.address),
            )
        })?;
        if self.web.max_rows == 0 {
            return Err(ConfigError::new("web.max_rows", "must be at least 1"));
        }
        let queued = 2
            * self.pipeline.queue_capacity as u64
            * self.collector.signals.output_batch_max_points as u64
            * APPROX_POINT_BYTES;
        let detector = self.detector.max_series as u64 * APPROX_SERIES_BYTES
            + crate::detect::config::approx_log_detector_bytes(&self.detector);
        let needed = self.collector.otlp.max_inflight_bytes + queued + detector;
        if needed > self.memory_budget_bytes {
            return Err(ConfigError::new(
                "memory_budget_bytes",
                format!(
                    "{} bytes is below what the limits allow: collector.otlp.max_inflight_bytes \
                     ({}) + 2 x pipeline.queue_capacity x collector.signals.output_batch_max_points \
                     x {APPROX_POINT_BYTES} bytes ({queued}) + detector.max_series x \
                     {APPROX_SERIES_BYTES} bytes + the log detector's caps ({detector}) = {needed}",
                    self.memory_budget_bytes, self.collector.otlp.max_inflight_bytes
                ),
            ));
        }
        let alert = self
            .alert
            .validate()
            .map_err(|err| ConfigError::new(format!("alert.{}", err.field), err.problem))?;
        let elasticsearch = self.sink.elasticsearch.validate().map_err(|err| {
            ConfigError::new(format!("sink.elasticsearch.{}", err.field), err.problem)
        })?;
        let redactor = self
            .redaction
            .build()
            .map_err(|(field, problem)| ConfigError::new(format!("redaction.{field}"), problem))?;
        let synthetic = self
            .synthetic
            .validate()
            .map_err(|err| ConfigError::new(format!("synthetic.{}", err.field), err.problem))?;
        Ok(ValidConfig {
            synthetic,
            redactor,
            elasticsearch,
            alert,
            collector,
            detector: self.detector.clone(),
            pipeline: self.pipeline.clone(),
            store: self.store.clone(),
            web_address,
            web: self.web.clone(),
        })
    }
}

/// Loads a configuration: the file when given (else defaults), `${VAR}` rendering, then
/// `PIPEWARDEN_*` overrides from `env`, then parsing with key paths in errors.
///
/// # Errors
/// An unreadable file, bad TOML, an unknown key, a value of the wrong type, or an undefined
/// `${VAR}` without default, each naming the key path or line.
pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|err| {
            ConfigError::new("", format!("cannot read {}: {err}", path.display()))
        })?,
        None => String::new(),
    };
    let rendered = render_env(&text, env)?;
    let mut table: toml::Table = rendered
        .parse()
        .map_err(|err: toml::de::Error| ConfigError::new(toml_error_path(&err), err.message()))?;
    apply_env_overrides(&mut table, env)?;
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, err.into_inner().message().to_owned())
    })
}

fn toml_error_path(err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => format!("byte {}", span.start),
        None => String::new(),
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text` with values from `env`; comments are left
/// as they are.
fn render_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        out.push_str(&render_line(code, index + 1, env)?);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset of a `#` comment outside TOML strings (the line's length when there is none).
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return i,
            None => {}
        }
    }
    line.len()
}

fn render_line(
    line: &str,
    line_no: usize,
    env: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::new(
                format!("line {line_no}"),
                "unterminated `${`",
            ));
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        match (env.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(ConfigError::new(
                    format!("line {line_no}: ${{{name}}}"),
                    "environment variable is not set and has no default",
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Applies `PIPEWARDEN_SECTION__KEY=value` overrides: `__` separates levels, names are lowercased.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Variables of the process itself, not config keys.
        if !rest.contains("__") && !is_top_level_key(rest) {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        let value = parse_env_value(raw);
        let mut current = &mut *table;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                current.insert(part.clone(), value.clone());
                break;
            }
            let entry = current
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::new(
                        parts[..=i].join("."),
                        format!("{name} overrides a key below a value that is not a table"),
                    ));
                }
            };
        }
    }
    Ok(())
}

fn is_top_level_key(rest: &str) -> bool {
    rest.eq_ignore_ascii_case("memory_budget_bytes")
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), &env(vars))
    }

    #[test]
    fn default_config_validates() {
        let config = load(None, &BTreeMap::new()).unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(valid.web_address.port(), 9464);
    }

    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/pipewarden.example.toml");
        let config = load(Some(&path), &BTreeMap::new()).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = load_str("[web]\nadress = \"x\"\n", &[]).unwrap_err();
        assert_eq!(err.path, "web.adress");
        assert!(err.problem.contains("adress"), "{err}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = load_str("[detector]\nmax_series = \"many\"\n", &[]).unwrap_err();
        assert_eq!(err.path, "detector.max_series");
    }

    #[test]
    fn min_point_interval_is_a_duration_of_at_most_a_day() {
        let config = load_str("[detector]\nmin_point_interval = \"250ms\"\n", &[]).unwrap();
        assert_eq!(
            config.detector.min_point_interval,
            Duration::from_millis(250)
        );
        config.validate().unwrap();
        let config = load_str("[detector]\nmin_point_interval = \"2days\"\n", &[]).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.path, "detector.min_point_interval");
        assert!(err.problem.contains("2days"), "{err}");
        let err = load_str("[detector]\nmin_point_interval = \"soon\"\n", &[]).unwrap_err();
        assert_eq!(err.path, "detector.min_point_interval");
    }

    #[test]
    fn invalid_value_names_its_path() {
        let config = load_str("[detector]\nalert_threshold = 150\n", &[]).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.path, "detector.alert_threshold");
        let config = load_str("[web]\naddress = \"nowhere\"\n", &[]).unwrap();
        assert_eq!(config.validate().unwrap_err().path, "web.address");
    }

    #[test]
    fn env_rendering_with_default_and_missing() {
        let config = load_str(
            "[web]\naddress = \"${HOST:-127.0.0.1}:${PORT}\"\n",
            &[("PORT", "9999")],
        )
        .unwrap();
        assert_eq!(config.web.address, "127.0.0.1:9999");
        let err = load_str("[web]\naddress = \"${NOPE}\"\n", &[]).unwrap_err();
        assert_eq!(err.path, "line 2: ${NOPE}");
        let config = load_str(
            "# ${NOT_RENDERED}\n[web] # ${NOR_THIS}\nmax_rows = 5\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.web.max_rows, 5);
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let config = load(
            None,
            &env(&[
                ("PIPEWARDEN_WEB__ADDRESS", "127.0.0.1:0"),
                ("PIPEWARDEN_DETECTOR__MAX_SERIES", "12"),
                ("PIPEWARDEN_STORE__RETENTION", "2h"),
                ("PIPEWARDEN_LOG", "debug"),
            ]),
        )
        .unwrap();
        assert_eq!(config.web.address, "127.0.0.1:0");
        assert_eq!(config.detector.max_series, 12);
        assert_eq!(config.store.retention, Duration::from_secs(7200));
    }

    #[test]
    fn synthetic_errors_name_the_full_path() {
        let text = "[[synthetic.probes]]\nname = \"p\"\n[synthetic.probes.inject.kafka]\n\
                    bootstrap_servers = \"127.0.0.1:1\"\n[synthetic.probes.observe.kafka]\n\
                    bootstrap_servers = \"127.0.0.1:1\"\ntopic = \"out\"\n";
        let err = load_str(text, &[]).unwrap().validate().unwrap_err();
        assert_eq!(err.path, "synthetic.probes[0].inject.kafka.topic");
    }

    #[test]
    fn memory_budget_is_enforced() {
        let config = load_str("memory_budget_bytes = 1024\n", &[]).unwrap();
        assert_eq!(config.validate().unwrap_err().path, "memory_budget_bytes");
    }

    #[test]
    fn bad_toml_is_an_error_not_a_panic() {
        assert!(load_str("[web\naddress=", &[]).is_err());
        assert!(load_str("x = ${", &[]).is_err());
    }
}
