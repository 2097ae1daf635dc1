//! Configuration of the collector: the `[collector]` section of `pipewarden.toml`.
//!
//! [`CollectorConfig`] is what the file says; [`CollectorConfig::validate`] does every check that
//! needs no I/O and returns a [`ValidCollectorConfig`], the only thing
//! [`Collector::build`](crate::Collector::build) accepts. Errors name the field by its path
//! relative to the collector section (`otlp.max_body_bytes`); the app prefixes `collector.`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Shortest accepted derivation window.
const MIN_WINDOW: Duration = Duration::from_millis(100);
/// Longest accepted derivation window (one day).
const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// The `[collector]` section: OTLP receivers and signal derivation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// OTLP receivers (`[collector.otlp]`).
    pub otlp: OtlpConfig,
    /// Signal derivation (`[collector.signals]`).
    pub signals: SignalsConfig,
    /// Kafka consumer lag read from the brokers (`[collector.kafka_lag]`); off without
    /// clusters.
    pub kafka_lag: crate::kafka_lag::KafkaLagConfig,
}

/// The `[collector.otlp]` section: OTLP/gRPC and OTLP/HTTP receivers and their limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Socket address of the OTLP/gRPC receiver, `IP:PORT` (port 0 picks a free port).
    /// Default `127.0.0.1:4317`.
    pub grpc_address: String,
    /// Socket address of the OTLP/HTTP receiver, `IP:PORT` (port 0 picks a free port).
    /// Default `127.0.0.1:4318`.
    pub http_address: String,
    /// Largest accepted request body in bytes, checked both as sent (compressed) and after
    /// decompression; bigger requests are answered HTTP 413 (gRPC: the decoder's
    /// `OUT_OF_RANGE`/`RESOURCE_EXHAUSTED`). Default 16777216 (16 MiB).
    pub max_body_bytes: u64,
    /// Byte budget of requests accepted but not yet turned into signals: the memory budget at
    /// the edge. At most 4294967295. Must be at least `max_body_bytes`. Default 67108864 (64 MiB).
    pub max_inflight_bytes: u64,
    /// How long a request waits for budget or queue space before it is refused with HTTP 503
    /// plus `Retry-After` (gRPC `UNAVAILABLE` plus `RetryInfo`), humantime. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub backpressure_wait: Duration,
    /// Delay advertised to refused clients in `Retry-After` (rounded up to whole seconds) and in
    /// gRPC `RetryInfo`, humantime. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Capacity, in requests, of the queue between the receivers and the deriver. Memory is
    /// bounded by `max_inflight_bytes` anyway; this bounds the request count. Default 1024.
    pub queue_capacity: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            grpc_address: "127.0.0.1:4317".to_owned(),
            http_address: "127.0.0.1:4318".to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            backpressure_wait: Duration::from_millis(50),
            retry_after: Duration::from_secs(1),
            queue_capacity: 1024,
        }
    }
}

/// The `[collector.signals]` section: how OTLP data becomes windowed series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Length of a derivation window, humantime, at least `100ms`. Windows are aligned to
    /// wall-clock multiples of this length. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Attributes that refine a stage name from `service` to `service/value`, in order of
    /// preference. Default `["pipeline.stage", "messaging.destination.name", "job.name"]`.
    pub stage_attributes: Vec<String>,
    /// Cardinality cap on distinct series keys (metric series and job series); points of new
    /// series beyond it are dropped and counted with reason `cardinality`. Default 10000.
    pub max_series: usize,
    /// Most stages tracked in one window; items of further stages are dropped and counted with
    /// reason `max_stages`. Default 1000.
    pub max_stages: usize,
    /// Latency samples kept per stage per window: percentiles are exact (nearest rank) up to
    /// this many spans, from a uniform reservoir sample beyond. Default 65536.
    pub max_latency_samples: usize,
    /// Most series points (and, separately, most log records) in one emitted batch.
    /// Default 10000.
    pub output_batch_max_points: usize,
    /// Most log records per second passed on whole (body, attributes, ids) to the log detector
    /// and the store; a token bucket with one second of burst. Every record still counts in
    /// the stage figures and log series; the records beyond are counted in
    /// `pipewarden_collector_dropped_total{signal="log_records",reason="record_rate"}`.
    /// 0 passes every record on. Default 20000.
    pub max_log_records_per_second: u64,
    /// Longest time derived points and records wait to fill a batch before they are passed on
    /// (a batch goes at once when it reaches `output_batch_max_points`). Batching keeps the
    /// per-batch cost of the detector and the store low at low rates; it adds at most this
    /// much latency. `0s` passes every request on at once. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Batch-job detection (`[collector.signals.jobs]`).
    pub jobs: JobsConfig,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            stage_attributes: vec![
                "pipeline.stage".to_owned(),
                "messaging.destination.name".to_owned(),
                "job.name".to_owned(),
            ],
            max_series: 10_000,
            max_stages: 1_000,
            max_latency_samples: 65_536,
            output_batch_max_points: 10_000,
            max_log_records_per_second: 20_000,
            batch_linger: Duration::from_millis(200),
            jobs: JobsConfig::default(),
        }
    }
}

/// The `[collector.signals.jobs]` section: which spans are runs of batch jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Spans carrying this attribute are job runs, the attribute value naming the job; empty
    /// disables detection by attribute. Default `job.name`.
    pub attribute: String,
    /// Spans with one of these names are job runs, the span name naming the job.
    /// Default empty.
    pub span_names: Vec<String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            attribute: "job.name".to_owned(),
            span_names: Vec::new(),
        }
    }
}

/// A [`CollectorConfig`] that passed [`CollectorConfig::validate`], with parsed values.
#[derive(Debug, Clone)]
pub struct ValidCollectorConfig {
    pub(crate) source: CollectorConfig,
    pub(crate) grpc_address: SocketAddr,
    pub(crate) http_address: SocketAddr,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_inflight_bytes: u32,
    pub(crate) kafka_lag: crate::kafka_lag::ValidKafkaLagConfig,
}

impl ValidCollectorConfig {
    /// Returns the configuration as written.
    pub fn config(&self) -> &CollectorConfig {
        &self.source
    }

    /// Returns the configured OTLP/gRPC address (port 0 when a free port is to be picked).
    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc_address
    }

    /// Returns the configured OTLP/HTTP address (port 0 when a free port is to be picked).
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Returns the validated Kafka lag section.
    pub fn kafka_lag(&self) -> &crate::kafka_lag::ValidKafkaLagConfig {
        &self.kafka_lag
    }
}

impl CollectorConfig {
    /// Checks every value that can be checked without I/O.
    ///
    /// # Errors
    ///
    /// Returns the first [`ConfigError`] found, naming the field path relative to the
    /// collector section (for example `otlp.max_body_bytes`).
    pub fn validate(&self) -> Result<ValidCollectorConfig, ConfigError> {
        let otlp = &self.otlp;
        let grpc_address = parse_address("otlp.grpc_address", &otlp.grpc_address)?;
        let http_address = parse_address("otlp.http_address", &otlp.http_address)?;
        if grpc_address == http_address && grpc_address.port() != 0 {
            return Err(ConfigError::new(
                "otlp.http_address",
                format!("{http_address} is also otlp.grpc_address"),
            ));
        }
        if otlp.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "otlp.max_body_bytes",
                "must be greater than 0",
            ));
        }
        let max_inflight_bytes = u32::try_from(otlp.max_inflight_bytes).map_err(|_| {
            ConfigError::new(
                "otlp.max_inflight_bytes",
                format!(
                    "{} exceeds the maximum {}",
                    otlp.max_inflight_bytes,
                    u32::MAX
                ),
            )
        })?;
        if otlp.max_inflight_bytes < otlp.max_body_bytes {
            return Err(ConfigError::new(
                "otlp.max_inflight_bytes",
                format!(
                    "{} is less than otlp.max_body_bytes ({}): a request of the maximum size \
                     could never be accepted",
                    otlp.max_inflight_bytes, otlp.max_body_bytes
                ),
            ));
        }
        // max_body_bytes <= max_inflight_bytes <= u32::MAX, so it fits a usize.
        let max_body_bytes = usize::try_from(otlp.max_body_bytes).map_err(|_| {
            ConfigError::new("otlp.max_body_bytes", "does not fit this platform's usize")
        })?;
        if otlp.retry_after.is_zero() {
            return Err(ConfigError::new(
                "otlp.retry_after",
                "must be greater than 0",
            ));
        }
        if otlp.backpressure_wait > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "otlp.backpressure_wait",
                "must be at most 60s",
            ));
        }
        if otlp.queue_capacity == 0 {
            return Err(ConfigError::new(
                "otlp.queue_capacity",
                "must be greater than 0",
            ));
        }

        let signals = &self.signals;
        if signals.window < MIN_WINDOW || signals.window > MAX_WINDOW {
            return Err(ConfigError::new(
                "signals.window",
                format!(
                    "{} is outside the accepted range 100ms..=1day",
                    humantime::format_duration(signals.window)
                ),
            ));
        }
        if !signals.window.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(ConfigError::new(
                "signals.window",
                "must be a whole number of milliseconds",
            ));
        }
        if let Some(i) = signals.stage_attributes.iter().position(|a| a.is_empty()) {
            return Err(ConfigError::new(
                format!("signals.stage_attributes[{i}]"),
                "must not be empty",
            ));
        }
        for (field, value) in [
            ("signals.max_series", signals.max_series),
            ("signals.max_stages", signals.max_stages),
            ("signals.max_latency_samples", signals.max_latency_samples),
            (
                "signals.output_batch_max_points",
                signals.output_batch_max_points,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, "must be greater than 0"));
            }
        }
        if signals.batch_linger > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "signals.batch_linger",
                "must be at most 10s",
            ));
        }
        if let Some(i) = signals.jobs.span_names.iter().position(|n| n.is_empty()) {
            return Err(ConfigError::new(
                format!("signals.jobs.span_names[{i}]"),
                "must not be empty",
            ));
        }

        let kafka_lag = self
            .kafka_lag
            .validate()
            .map_err(|err| ConfigError::new(format!("kafka_lag.{}", err.field), err.problem))?;
        Ok(ValidCollectorConfig {
            kafka_lag,
            source: self.clone(),
            grpc_address,
            http_address,
            max_body_bytes,
            max_inflight_bytes,
        })
    }
}

fn parse_address(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|err| {
        ConfigError::new(
            field,
            format!("{value:?} is not an IP:PORT socket address ({err})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &CollectorConfig) -> String {
        config.validate().expect_err("config must be refused").field
    }

    #[test]
    fn default_validates() {
        let valid = CollectorConfig::default().validate().unwrap();
        assert_eq!(valid.grpc_address().to_string(), "127.0.0.1:4317");
        assert_eq!(valid.http_address().to_string(), "127.0.0.1:4318");
        assert_eq!(valid.max_body_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn documented_example_parses_and_validates() {
        let text = r#"
            [otlp]
            grpc_address = "0.0.0.0:4317"
            http_address = "0.0.0.0:4318"
            max_body_bytes = 16777216
            max_inflight_bytes = 67108864
            backpressure_wait = "50ms"
            retry_after = "1s"
            queue_capacity = 1024
            [signals]
            window = "10s"
            stage_attributes = ["pipeline.stage", "messaging.destination.name", "job.name"]
            max_series = 10000
            max_stages = 1000
            max_latency_samples = 65536
            output_batch_max_points = 10000
            max_log_records_per_second = 20000
            batch_linger = "200ms"
            [signals.jobs]
            attribute = "job.name"
            span_names = ["nightly-export"]
        "#;
        let config: CollectorConfig = toml::from_str(text).unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(valid.config().signals.jobs.span_names, ["nightly-export"]);
        assert_eq!(
            valid.config().otlp.backpressure_wait,
            Duration::from_millis(50)
        );
    }

    #[test]
    fn empty_section_is_default() {
        let config: CollectorConfig = toml::from_str("").unwrap();
        assert_eq!(config, CollectorConfig::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<CollectorConfig>("[otlp]\nmax_body = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_body"), "{err}");
    }

    #[test]
    fn bad_addresses_name_the_field() {
        let mut config = CollectorConfig::default();
        config.otlp.grpc_address = "localhost".to_owned();
        assert_eq!(field_of(&config), "otlp.grpc_address");
        let mut config = CollectorConfig::default();
        config.otlp.http_address = "127.0.0.1:99999".to_owned();
        assert_eq!(field_of(&config), "otlp.http_address");
        let mut config = CollectorConfig::default();
        config.otlp.http_address = config.otlp.grpc_address.clone();
        assert_eq!(field_of(&config), "otlp.http_address");
    }

    #[test]
    fn port_zero_twice_is_fine() {
        let mut config = CollectorConfig::default();
        config.otlp.grpc_address = "127.0.0.1:0".to_owned();
        config.otlp.http_address = "127.0.0.1:0".to_owned();
        config.validate().unwrap();
    }

    #[test]
    fn limits_are_checked() {
        type Change = Box<dyn Fn(&mut CollectorConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "otlp.max_body_bytes",
                Box::new(|c| c.otlp.max_body_bytes = 0),
            ),
            (
                "otlp.max_inflight_bytes",
                Box::new(|c| c.otlp.max_inflight_bytes = 1 << 33),
            ),
            (
                "otlp.max_inflight_bytes",
                Box::new(|c| c.otlp.max_inflight_bytes = 1024),
            ),
            (
                "otlp.retry_after",
                Box::new(|c| c.otlp.retry_after = Duration::ZERO),
            ),
            (
                "otlp.backpressure_wait",
                Box::new(|c| c.otlp.backpressure_wait = Duration::from_secs(61)),
            ),
            (
                "otlp.queue_capacity",
                Box::new(|c| c.otlp.queue_capacity = 0),
            ),
            (
                "signals.window",
                Box::new(|c| c.signals.window = Duration::from_millis(99)),
            ),
            (
                "signals.window",
                Box::new(|c| c.signals.window = Duration::from_secs(86_401)),
            ),
            (
                "signals.window",
                Box::new(|c| c.signals.window = Duration::from_micros(100_500)),
            ),
            (
                "signals.stage_attributes[1]",
                Box::new(|c| c.signals.stage_attributes[1].clear()),
            ),
            ("signals.max_series", Box::new(|c| c.signals.max_series = 0)),
            ("signals.max_stages", Box::new(|c| c.signals.max_stages = 0)),
            (
                "signals.max_latency_samples",
                Box::new(|c| c.signals.max_latency_samples = 0),
            ),
            (
                "signals.output_batch_max_points",
                Box::new(|c| c.signals.output_batch_max_points = 0),
            ),
            (
                "signals.jobs.span_names[0]",
                Box::new(|c| c.signals.jobs.span_names = vec![String::new()]),
            ),
        ];
        for (field, change) in cases {
            let mut config = CollectorConfig::default();
            change(&mut config);
            let err = config.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        }
    }

    #[test]
    fn window_of_exactly_100ms_is_accepted() {
        let mut config = CollectorConfig::default();
        config.signals.window = Duration::from_millis(100);
        config.validate().unwrap();
    }
}
