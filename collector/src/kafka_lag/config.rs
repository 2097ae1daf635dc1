//! Configuration of the Kafka lag source: the `[collector.kafka_lag]` section.
//!
//! [`KafkaLagConfig`] is what the file says; [`KafkaLagConfig::validate`] does every check that
//! needs no I/O (regexes compile, librdkafka accepts the client settings) and returns a
//! [`ValidKafkaLagConfig`]. Errors name the key path relative to the section, for example
//! `clusters[0].bootstrap_servers` or `clusters[1].groups.regex`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Shortest accepted poll interval.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// librdkafka settings the source sets itself; the `client` map may not override them.
const RESERVED_CLIENT_KEYS: [&str; 4] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
];

/// The `[collector.kafka_lag]` section: consumer lag read from Kafka brokers.
///
/// The default has no cluster, so the source is disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaLagConfig {
    /// Clusters to watch (`[[collector.kafka_lag.clusters]]`). Default none (source disabled).
    pub clusters: Vec<ClusterConfig>,
    /// Time between two polls of a cluster, humantime. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Number of recent samples per partition the verdicts look at (at least 2). Default 10.
    pub window_samples: usize,
    /// Per-group lag thresholds below which lag counts as caught up (first match wins).
    /// Default none.
    pub thresholds: Vec<LagThreshold>,
    /// Deadline of each broker request (metadata, group list, offsets, timestamp reads),
    /// humantime. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First retry delay after a failed poll, doubled after each further failure, humantime.
    /// Default `1s`.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Longest retry delay after failed polls, humantime. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Most partitions per cluster that get partition-level series and metrics (group totals
    /// are always reported); keeps label and series cardinality bounded. Default 10000.
    pub max_partition_series: usize,
    /// Most partitions whose message timestamps are read per cluster and tick to measure lag
    /// in seconds (a timestamp is read once per committed offset, then remembered); partitions
    /// beyond it get an estimate that tick. Default 1000.
    pub max_timestamp_reads: usize,
}

impl Default for KafkaLagConfig {
    fn default() -> Self {
        Self {
            clusters: Vec::new(),
            poll_interval: Duration::from_secs(10),
            window_samples: 10,
            thresholds: Vec::new(),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_partition_series: 10_000,
            max_timestamp_reads: 1_000,
        }
    }
}

/// One Kafka cluster (`[[collector.kafka_lag.clusters]]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Name of the cluster in series, metrics and reports; unique, non-empty. No default.
    pub name: String,
    /// Comma-separated `host:port` list of brokers to bootstrap from. No default.
    pub bootstrap_servers: String,
    /// Extra librdkafka settings (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`, ...). Default none.
    pub client: BTreeMap<String, String>,
    /// Which consumer groups to watch. Default all.
    pub groups: NameFilter,
    /// Which topics to watch. Default all.
    pub topics: NameFilter,
    /// How committed offsets are read. Default `auto`.
    pub offset_fetch: OffsetFetchMode,
}

/// Selects names (groups or topics): a name is selected when it is in `allow` or matches
/// `regex`; with both empty, every name is selected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameFilter {
    /// Exact names to select. Default none.
    pub allow: Vec<String>,
    /// Regular expression (unanchored, Rust `regex` syntax) selecting names. Default none.
    pub regex: Option<String>,
}

/// How committed offsets are read from the group coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetFetchMode {
    /// `batched` on plaintext connections, `per_group` when `security.protocol` is set to
    /// anything else.
    #[default]
    Auto,
    /// One OffsetFetch request (version 8, all groups of a coordinator at once) per coordinator
    /// and tick, sent by pipewarden's own minimal Kafka protocol client. Needs Kafka 3.0+ and a
    /// plaintext listener.
    Batched,
    /// One short-lived librdkafka consumer per group and tick (never joins the group); works
    /// with every security setting, costs several requests per group.
    PerGroup,
}

/// Lag below which a group counts as caught up (`[[collector.kafka_lag.thresholds]]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LagThreshold {
    /// Group name, exact or a regular expression matching the whole name. No default.
    pub group: String,
    /// Lag in messages up to which a partition counts as caught up. Default 0.
    pub min_lag_messages: u64,
    /// Lag in seconds up to which a partition counts as caught up (0 disables the seconds
    /// test). Default 0.
    pub min_lag_seconds: f64,
}

/// A [`KafkaLagConfig`] that passed [`KafkaLagConfig::validate`], with compiled filters.
#[derive(Debug, Clone)]
pub struct ValidKafkaLagConfig {
    pub(crate) source: KafkaLagConfig,
    pub(crate) clusters: Vec<ValidCluster>,
    pub(crate) thresholds: Vec<ValidThreshold>,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidCluster {
    pub(crate) name: String,
    pub(crate) bootstrap_servers: String,
    pub(crate) client: BTreeMap<String, String>,
    pub(crate) groups: ValidFilter,
    pub(crate) topics: ValidFilter,
    /// `Auto` resolved.
    pub(crate) offset_fetch: OffsetFetchMode,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ValidFilter {
    allow: BTreeSet<String>,
    regex: Option<Regex>,
}

impl ValidFilter {
    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.allow.is_empty() && self.regex.is_none() {
            return true;
        }
        self.allow.contains(name) || self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ValidThreshold {
    group: String,
    regex: Regex,
    pub(crate) min_lag_messages: u64,
    pub(crate) min_lag_seconds: f64,
}

impl ValidThreshold {
    fn matches(&self, group: &str) -> bool {
        self.group == group || self.regex.is_match(group)
    }
}

/// Lag up to which a partition counts as caught up, for one group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Threshold {
    pub(crate) min_lag_messages: u64,
    pub(crate) min_lag_seconds: f64,
}

impl ValidKafkaLagConfig {
    /// Returns the configuration as written.
    pub fn config(&self) -> &KafkaLagConfig {
        &self.source
    }

    /// Returns true when at least one cluster is configured.
    pub fn is_enabled(&self) -> bool {
        !self.clusters.is_empty()
    }

    /// Returns the configured cluster names, in order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    pub(crate) fn threshold_for(&self, group: &str) -> Threshold {
        self.thresholds
            .iter()
            .find(|t| t.matches(group))
            .map(|t| Threshold {
                min_lag_messages: t.min_lag_messages,
                min_lag_seconds: t.min_lag_seconds,
            })
            .unwrap_or_default()
    }
}

impl KafkaLagConfig {
    /// Checks every value that can be checked without I/O: names, servers, regexes, durations,
    /// and that librdkafka accepts the `client` settings.
    ///
    /// # Errors
    ///
    /// Returns the first [`ConfigError`] found, naming the key path relative to the section
    /// (for example `clusters[0].bootstrap_servers`, `clusters[1].groups.regex`).
    pub fn validate(&self) -> Result<ValidKafkaLagConfig, ConfigError> {
        if self.poll_interval < MIN_POLL_INTERVAL {
            return Err(ConfigError::new("poll_interval", "must be at least 50ms"));
        }
        if self.window_samples < 2 {
            return Err(ConfigError::new("window_samples", "must be at least 2"));
        }
        if self.window_samples > 1_000 {
            return Err(ConfigError::new("window_samples", "must be at most 1000"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "request_timeout",
                "must be greater than 0",
            ));
        }
        if self.backoff_min.is_zero() {
            return Err(ConfigError::new("backoff_min", "must be greater than 0"));
        }
        if self.backoff_max < self.backoff_min {
            return Err(ConfigError::new(
                "backoff_max",
                "must be at least backoff_min",
            ));
        }
        let mut names = BTreeSet::new();
        let mut clusters = Vec::with_capacity(self.clusters.len());
        for (i, cluster) in self.clusters.iter().enumerate() {
            let valid = validate_cluster(&format!("clusters[{i}]"), cluster)?;
            if !names.insert(valid.name.clone()) {
                return Err(ConfigError::new(
                    format!("clusters[{i}].name"),
                    format!("{:?} names another cluster too", valid.name),
                ));
            }
            clusters.push(valid);
        }
        let mut thresholds = Vec::with_capacity(self.thresholds.len());
        for (i, threshold) in self.thresholds.iter().enumerate() {
            let field = format!("thresholds[{i}]");
            if threshold.group.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.group"),
                    "must not be empty",
                ));
            }
            let regex = Regex::new(&format!("^(?:{})$", threshold.group)).map_err(|err| {
                ConfigError::new(format!("{field}.group"), format!("invalid regex: {err}"))
            })?;
            if !threshold.min_lag_seconds.is_finite() || threshold.min_lag_seconds < 0.0 {
                return Err(ConfigError::new(
                    format!("{field}.min_lag_seconds"),
                    "must be a finite number, at least 0",
                ));
            }
            thresholds.push(ValidThreshold {
                group: threshold.group.clone(),
                regex,
                min_lag_messages: threshold.min_lag_messages,
                min_lag_seconds: threshold.min_lag_seconds,
            });
        }
        Ok(ValidKafkaLagConfig {
            source: self.clone(),
            clusters,
            thresholds,
        })
    }
}

fn validate_cluster(field: &str, cluster: &ClusterConfig) -> Result<ValidCluster, ConfigError> {
    if cluster.name.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not be empty",
        ));
    }
    if cluster.name.contains('/') {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not contain '/' (it separates the parts of a stage name)",
        ));
    }
    let servers: Vec<&str> = cluster
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.bootstrap_servers"),
            "must list at least one host:port",
        ));
    }
    for server in &servers {
        let port = server
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(port))) if !host.is_empty() && port != 0 => {}
            _ => {
                return Err(ConfigError::new(
                    format!("{field}.bootstrap_servers"),
                    format!("{server:?} is not host:port"),
                ));
            }
        }
    }
    for key in cluster.client.keys() {
        if RESERVED_CLIENT_KEYS.contains(&key.as_str()) {
            return Err(ConfigError::new(
                format!("{field}.client.{key}"),
                "is set by pipewarden and cannot be overridden",
            ));
        }
    }
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", servers.join(","));
    for (key, value) in &cluster.client {
        client.set(key, value);
    }
    // Only builds librdkafka's configuration object: no thread, no connection.
    if let Err(err) = client.create_native_config() {
        return Err(ConfigError::new(
            format!("{field}.client"),
            format!("rejected by librdkafka: {err}"),
        ));
    }
    let plaintext = cluster
        .client
        .get("security.protocol")
        .is_none_or(|p| p.eq_ignore_ascii_case("plaintext"));
    let offset_fetch = match cluster.offset_fetch {
        OffsetFetchMode::Auto if plaintext => OffsetFetchMode::Batched,
        OffsetFetchMode::Auto => OffsetFetchMode::PerGroup,
        OffsetFetchMode::Batched if !plaintext => {
            return Err(ConfigError::new(
                format!("{field}.offset_fetch"),
                "batched needs a plaintext listener (client.security.protocol); use per_group",
            ));
        }
        other => other,
    };
    Ok(ValidCluster {
        name: cluster.name.clone(),
        bootstrap_servers: servers.join(","),
        client: cluster.client.clone(),
        groups: validate_filter(&format!("{field}.groups"), &cluster.groups)?,
        topics: validate_filter(&format!("{field}.topics"), &cluster.topics)?,
        offset_fetch,
    })
}

fn validate_filter(field: &str, filter: &NameFilter) -> Result<ValidFilter, ConfigError> {
    if let Some(i) = filter.allow.iter().position(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}.allow[{i}]"),
            "must not be empty",
        ));
    }
    let regex = match &filter.regex {
        None => None,
        Some(pattern) if pattern.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.regex"),
                "must not be empty",
            ));
        }
        Some(pattern) => Some(Regex::new(pattern).map_err(|err| {
            ConfigError::new(format!("{field}.regex"), format!("invalid regex: {err}"))
        })?),
    };
    Ok(ValidFilter {
        allow: filter.allow.iter().cloned().collect(),
        regex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> ClusterConfig {
        ClusterConfig {
            name: name.to_owned(),
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            ..ClusterConfig::default()
        }
    }

    fn error_field(config: &KafkaLagConfig) -> String {
        config.validate().unwrap_err().field
    }

    #[test]
    fn default_validates_and_is_disabled() {
        let valid = KafkaLagConfig::default().validate().unwrap();
        assert!(!valid.is_enabled());
    }

    #[test]
    fn parses_a_full_section() {
        let text = r#"
            poll_interval = "2s"
            window_samples = 5
            [[clusters]]
            name = "main"
            bootstrap_servers = "k1:9092, k2:9092"
            client = { "client.id" = "pipewarden" }
            groups = { allow = ["orders"], regex = "^etl-" }
            [[thresholds]]
            group = "noisy-.*"
            min_lag_messages = 200
        "#;
        let config: KafkaLagConfig = toml::from_str(text).unwrap();
        let valid = config.validate().unwrap();
        assert!(valid.is_enabled());
        let cluster = &valid.clusters[0];
        assert_eq!(cluster.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(cluster.offset_fetch, OffsetFetchMode::Batched);
        assert!(cluster.groups.matches("orders"));
        assert!(cluster.groups.matches("etl-1"));
        assert!(!cluster.groups.matches("other"));
        assert!(cluster.topics.matches("anything"));
        assert_eq!(valid.threshold_for("noisy-a").min_lag_messages, 200);
        assert_eq!(valid.threshold_for("quiet").min_lag_messages, 0);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<KafkaLagConfig>("pol_interval = \"1s\"").is_err());
        assert!(toml::from_str::<KafkaLagConfig>("[[clusters]]\nnam = \"x\"").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = KafkaLagConfig {
            clusters: vec![cluster("a"), cluster("b")],
            ..KafkaLagConfig::default()
        };
        config.clusters[0].bootstrap_servers = " ".to_owned();
        assert_eq!(error_field(&config), "clusters[0].bootstrap_servers");
        config.clusters[0].bootstrap_servers = "host-without-port".to_owned();
        assert_eq!(error_field(&config), "clusters[0].bootstrap_servers");
        config.clusters[0] = cluster("a");
        config.clusters[1].groups.regex = Some("(".to_owned());
        assert_eq!(error_field(&config), "clusters[1].groups.regex");
        config.clusters[1] = cluster("b");
        config.clusters[1].topics.regex = Some("[".to_owned());
        assert_eq!(error_field(&config), "clusters[1].topics.regex");
        config.clusters[1] = cluster("a");
        assert_eq!(error_field(&config), "clusters[1].name");
        config.clusters[1] = cluster("");
        assert_eq!(error_field(&config), "clusters[1].name");
        config.clusters[1] = cluster("b");
        config.clusters[1]
            .client
            .insert("group.id".to_owned(), "x".to_owned());
        assert_eq!(error_field(&config), "clusters[1].client.group.id");
        config.clusters[1] = cluster("b");
        config.clusters[1]
            .client
            .insert("no.such.setting".to_owned(), "x".to_owned());
        assert_eq!(error_field(&config), "clusters[1].client");
        config.clusters[1] = cluster("b");
        config.clusters[1]
            .client
            .insert("security.protocol".to_owned(), "sasl_plaintext".to_owned());
        config.clusters[1].offset_fetch = OffsetFetchMode::Batched;
        assert_eq!(error_field(&config), "clusters[1].offset_fetch");
        config.clusters[1].offset_fetch = OffsetFetchMode::Auto;
        let valid = config.validate().unwrap();
        assert_eq!(valid.clusters[1].offset_fetch, OffsetFetchMode::PerGroup);
        // TLS and SASL over TLS are accepted (librdkafka is built with OpenSSL).
        for protocol in ["ssl", "sasl_ssl"] {
            config.clusters[1] = cluster("b");
            config.clusters[1]
                .client
                .insert("security.protocol".to_owned(), protocol.to_owned());
            let valid = config.validate().unwrap();
            assert_eq!(valid.clusters[1].offset_fetch, OffsetFetchMode::PerGroup);
        }

        let base = KafkaLagConfig::default();
        let bad = KafkaLagConfig {
            window_samples: 1,
            ..base.clone()
        };
        assert_eq!(error_field(&bad), "window_samples");
        let bad = KafkaLagConfig {
            poll_interval: Duration::ZERO,
            ..base.clone()
        };
        assert_eq!(error_field(&bad), "poll_interval");
        let bad = KafkaLagConfig {
            backoff_max: Duration::from_millis(1),
            ..base.clone()
        };
        assert_eq!(error_field(&bad), "backoff_max");
        let bad = KafkaLagConfig {
            thresholds: vec![LagThreshold {
                group: "(".to_owned(),
                ..LagThreshold::default()
            }],
            ..base
        };
        assert_eq!(error_field(&bad), "thresholds[0].group");
    }
}
