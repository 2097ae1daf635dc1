//! `[sink.elasticsearch]`: where and how pipewarden writes to Elasticsearch.
//!
//! [`ElasticsearchConfig::validate`] does every check that needs no I/O and returns a
//! [`ValidElasticsearchConfig`]; reading the CA file and connecting happen in the build step.

use std::path::PathBuf;
use std::time::Duration;

use elasticsearch::http::Url;
use serde::{Deserialize, Serialize};

use super::redact::RedactionConfig;

/// Sink section. Disabled by default: the embedded store stays the default sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Turns the sink on. Default `false`.
    pub enabled: bool,
    /// Cluster URLs, used round robin. Default `["http://127.0.0.1:9200"]`.
    pub urls: Vec<String>,
    /// Authentication. Default none.
    pub auth: AuthConfig,
    /// PEM file of the CA that signed the cluster's certificate. Default none (system roots).
    pub tls_ca_path: Option<PathBuf>,
    /// Namespace part of every data stream or index name (`type-dataset-namespace`).
    /// Lowercase letters, digits and `_` only. Default `"default"`.
    pub namespace: String,
    /// `data_stream` (real clusters, default) or `index` (dated indices, for clusters without
    /// data streams).
    pub mode: IndexMode,
    /// How long documents are kept: ILM deletes them (data streams) or the retention job deletes
    /// dated indices older than this (index mode). Default `30d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Per-request timeout. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Batching of bulk requests.
    pub batch: BatchConfig,
    /// Bulk requests in flight at once. Default 4.
    pub max_in_flight: usize,
    /// Retries of items refused with 429 or 5xx.
    pub retry: RetryConfig,
    /// Durable on-disk queue in front of the cluster.
    pub spool: SpoolConfig,
    /// JSON-lines file receiving documents the cluster refused permanently.
    /// Default `./pipewarden-data/elasticsearch-dead-letters.jsonl`.
    pub dead_letter_path: PathBuf,
    /// How long shutdown keeps sending what is spooled before leaving the rest for the next
    /// start. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// PII redaction applied to every document before it is spooled.
    pub redaction: RedactionConfig,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            urls: vec!["http://127.0.0.1:9200".to_owned()],
            auth: AuthConfig::None,
            tls_ca_path: None,
            namespace: "default".to_owned(),
            mode: IndexMode::DataStream,
            retention: Duration::from_secs(30 * 24 * 3600),
            request_timeout: Duration::from_secs(30),
            batch: BatchConfig::default(),
            max_in_flight: 4,
            retry: RetryConfig::default(),
            spool: SpoolConfig::default(),
            dead_letter_path: PathBuf::from("./pipewarden-data/elasticsearch-dead-letters.jsonl"),
            shutdown_timeout: Duration::from_secs(10),
            redaction: RedactionConfig::default(),
        }
    }
}

/// Authentication to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An API key, either as `id` + `api_key` or as the base64 `encoded` form.
    ApiKey {
        /// Key id (with `api_key`).
        #[serde(default)]
        id: Option<String>,
        /// Key secret (with `id`).
        #[serde(default)]
        api_key: Option<String>,
        /// Base64 of `id:api_key`, as Elasticsearch returns it.
        #[serde(default)]
        encoded: Option<String>,
    },
    /// A bearer token.
    Bearer {
        /// The token.
        token: String,
    },
}

/// Where documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMode {
    /// Data streams `type-pipewarden.kind-namespace` with an ILM policy.
    DataStream,
    /// Dated indices `pipewarden-kind-namespace-YYYY.MM.DD` and a retention job.
    Index,
}

/// Batching of bulk requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Documents per bulk request at most. Default 1000.
    pub max_docs: usize,
    /// Encoded bytes per bulk request at most (a single larger document is sent alone).
    /// Default 5 MiB.
    pub max_bytes: u64,
    /// How long a partial batch waits for more documents. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_docs: 1000,
            max_bytes: 5 * 1024 * 1024,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Retries with jittered exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Backoff cap. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Attempts of an item refused with 429/5xx before it goes to the dead letters (a cluster
    /// that cannot be reached is retried forever: the spool holds the documents). 0 = never
    /// give up. Default 20.
    pub max_item_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_item_attempts: 20,
        }
    }
}

/// The durable spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the segment files. Default `./pipewarden-data/elasticsearch-spool`.
    pub dir: PathBuf,
    /// Bytes the spool may hold. Default 1 GiB.
    pub max_spool_bytes: u64,
    /// Size at which a segment file is closed and a new one started. Default 16 MiB.
    pub segment_bytes: u64,
    /// What happens when the spool is full: `block` (senders wait: back-pressure upstream,
    /// default) or `drop_oldest` (the oldest unsent documents are dropped and counted).
    pub when_full: WhenFull,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./pipewarden-data/elasticsearch-spool"),
            max_spool_bytes: 1024 * 1024 * 1024,
            segment_bytes: 16 * 1024 * 1024,
            when_full: WhenFull::Block,
        }
    }
}

/// Rule applied when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Senders wait until the cluster confirmed enough documents.
    Block,
    /// The oldest documents not yet in flight are dropped (counted with reason `spool_full`).
    DropOldest,
}

/// A config value that cannot work; `field` is relative to the sink section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Field path, e.g. `batch.max_docs`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn problem(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct ValidElasticsearchConfig {
    pub(crate) enabled: bool,
    pub(crate) urls: Vec<Url>,
    pub(crate) auth: AuthConfig,
    pub(crate) tls_ca_path: Option<PathBuf>,
    pub(crate) namespace: String,
    pub(crate) mode: IndexMode,
    pub(crate) retention: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) batch: BatchConfig,
    pub(crate) max_in_flight: usize,
    pub(crate) retry: RetryConfig,
    pub(crate) spool: SpoolConfig,
    pub(crate) dead_letter_path: PathBuf,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) redaction: super::redact::Redactor,
}

impl ValidElasticsearchConfig {
    /// Returns true when the sink is turned on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Returns the namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Returns the index mode.
    pub fn mode(&self) -> IndexMode {
        self.mode
    }

    /// Returns the redactor built from the `redaction` rules (the local store can use it too).
    pub fn redactor(&self) -> &super::redact::Redactor {
        &self.redaction
    }
}

impl ElasticsearchConfig {
    /// Checks every value that needs no I/O.
    ///
    /// # Errors
    /// The first bad value, with its path relative to the section.
    pub fn validate(&self) -> Result<ValidElasticsearchConfig, ConfigError> {
        if self.urls.is_empty() {
            return Err(problem("urls", "at least one URL is required"));
        }
        let mut urls = Vec::with_capacity(self.urls.len());
        for (i, raw) in self.urls.iter().enumerate() {
            let url = Url::parse(raw)
                .map_err(|err| problem(&format!("urls[{i}]"), format!("{raw:?}: {err}")))?;
            if url.scheme() != "http" && url.scheme() != "https" {
                return Err(problem(
                    &format!("urls[{i}]"),
                    "scheme must be http or https",
                ));
            }
            urls.push(url);
        }
        match &self.auth {
            AuthConfig::None => {}
            AuthConfig::Basic { username, .. } if username.is_empty() => {
                return Err(problem("auth.username", "must not be empty"));
            }
            AuthConfig::Basic { .. } => {}
            AuthConfig::ApiKey {
                id,
                api_key,
                encoded,
            } => match (id, api_key, encoded) {
                (Some(id), Some(key), None) if !id.is_empty() && !key.is_empty() => {}
                (None, None, Some(encoded)) if !encoded.is_empty() => {}
                _ => {
                    return Err(problem(
                        "auth",
                        "api_key needs either `id` and `api_key`, or `encoded`",
                    ));
                }
            },
            AuthConfig::Bearer { token } if token.is_empty() => {
                return Err(problem("auth.token", "must not be empty"));
            }
            AuthConfig::Bearer { .. } => {}
        }
        if self.namespace.is_empty()
            || self.namespace.len() > 100
            || !self
                .namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(problem(
                "namespace",
                "1-100 characters, lowercase letters, digits and `_` only",
            ));
        }
        if self.retention < Duration::from_secs(3600) {
            return Err(problem("retention", "must be at least 1h"));
        }
        if self.request_timeout.is_zero() {
            return Err(problem("request_timeout", "must be positive"));
        }
        if self.batch.max_docs == 0 {
            return Err(problem("batch.max_docs", "must be at least 1"));
        }
        if self.batch.max_bytes < 1024 {
            return Err(problem("batch.max_bytes", "must be at least 1024"));
        }
        if self.batch.flush_interval.is_zero() {
            return Err(problem("batch.flush_interval", "must be positive"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 64 {
            return Err(problem("max_in_flight", "must be between 1 and 64"));
        }
        if self.retry.backoff_min.is_zero() {
            return Err(problem("retry.backoff_min", "must be positive"));
        }
        if self.retry.backoff_max < self.retry.backoff_min {
            return Err(problem(
                "retry.backoff_max",
                "must be at least retry.backoff_min",
            ));
        }
        if self.spool.dir.as_os_str().is_empty() {
            return Err(problem("spool.dir", "must not be empty"));
        }
        if self.spool.segment_bytes < 4096 {
            return Err(problem("spool.segment_bytes", "must be at least 4096"));
        }
        if self.spool.max_spool_bytes < self.spool.segment_bytes {
            return Err(problem(
                "spool.max_spool_bytes",
                "must be at least spool.segment_bytes",
            ));
        }
        if self.dead_letter_path.as_os_str().is_empty() {
            return Err(problem("dead_letter_path", "must not be empty"));
        }
        let redaction = self
            .redaction
            .build()
            .map_err(|(field, msg)| problem(&format!("redaction.{field}"), msg))?;
        Ok(ValidElasticsearchConfig {
            enabled: self.enabled,
            urls,
            auth: self.auth.clone(),
            tls_ca_path: self.tls_ca_path.clone(),
            namespace: self.namespace.clone(),
            mode: self.mode,
            retention: self.retention,
            request_timeout: self.request_timeout,
            batch: self.batch.clone(),
            max_in_flight: self.max_in_flight,
            retry: self.retry.clone(),
            spool: self.spool.clone(),
            dead_letter_path: self.dead_letter_path.clone(),
            shutdown_timeout: self.shutdown_timeout,
            redaction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_validates_and_is_disabled() {
        let valid = ElasticsearchConfig::default().validate().unwrap();
        assert!(!valid.enabled());
        assert_eq!(valid.namespace(), "default");
        assert_eq!(valid.mode(), IndexMode::DataStream);
    }

    #[test]
    fn parses_toml_with_auth_and_durations() {
        let config: ElasticsearchConfig = toml::from_str(
            r#"
            enabled = true
            urls = ["https://es1:9200", "https://es2:9200"]
            namespace = "prod"
            mode = "index"
            retention = "7d"
            auth = { kind = "api_key", encoded = "abc=" }
            [batch]
            max_docs = 10
            flush_interval = "200ms"
            [spool]
            when_full = "drop_oldest"
            "#,
        )
        .unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(valid.urls.len(), 2);
        assert_eq!(valid.mode, IndexMode::Index);
        assert_eq!(valid.retention, Duration::from_secs(7 * 86400));
        assert_eq!(valid.spool.when_full, WhenFull::DropOldest);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<ElasticsearchConfig>("urlz = []").is_err());
        assert!(toml::from_str::<ElasticsearchConfig>("[batch]\nmax_doc = 1").is_err());
    }

    type Mutation = Box<dyn Fn(&mut ElasticsearchConfig)>;

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("urls", Box::new(|c| c.urls.clear())),
            ("urls[0]", Box::new(|c| c.urls = vec!["ftp://x".into()])),
            ("urls[0]", Box::new(|c| c.urls = vec!["not a url".into()])),
            ("namespace", Box::new(|c| c.namespace = "Prod-1".into())),
            (
                "retention",
                Box::new(|c| c.retention = Duration::from_secs(1)),
            ),
            ("batch.max_docs", Box::new(|c| c.batch.max_docs = 0)),
            ("batch.max_bytes", Box::new(|c| c.batch.max_bytes = 10)),
            ("max_in_flight", Box::new(|c| c.max_in_flight = 0)),
            (
                "retry.backoff_max",
                Box::new(|c| c.retry.backoff_max = Duration::from_millis(1)),
            ),
            (
                "spool.max_spool_bytes",
                Box::new(|c| c.spool.max_spool_bytes = 1),
            ),
            (
                "auth",
                Box::new(|c| {
                    c.auth = AuthConfig::ApiKey {
                        id: Some("x".into()),
                        api_key: None,
                        encoded: None,
                    }
                }),
            ),
            (
                "auth.token",
                Box::new(|c| {
                    c.auth = AuthConfig::Bearer {
                        token: String::new(),
                    }
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut config = ElasticsearchConfig::default();
            mutate(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }
}
