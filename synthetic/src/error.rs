//! Errors of the synthetic prober, one enum per boundary.

/// A configuration problem, naming the key path relative to `[synthetic]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Key path, e.g. `probes[2].inject.kafka.topic`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// A probe could not be built (client creation, metadata, consumer assignment).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Kafka client could not be created or configured.
    #[error("probe {probe}: kafka {role} for topic {topic}: {source}")]
    Kafka {
        /// Probe name.
        probe: String,
        /// `producer` or `consumer`.
        role: &'static str,
        /// Topic.
        topic: String,
        /// Cause.
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The topic has no partition in the metadata (missing topic).
    #[error("probe {probe}: topic {topic} has no partitions")]
    NoPartitions {
        /// Probe name.
        probe: String,
        /// Topic.
        topic: String,
    },
    /// An HTTP client could not be built.
    #[error("probe {probe}: http client: {source}")]
    Http {
        /// Probe name.
        probe: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// A blocking task failed.
    #[error("probe {probe}: {what} task failed: {detail}")]
    Task {
        /// Probe name.
        probe: String,
        /// What ran.
        what: &'static str,
        /// Join error text.
        detail: String,
    },
}

/// Injecting one probe event failed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The broker refused or the delivery timed out.
    #[error("kafka produce to {topic}[{partition}]: {source}")]
    Kafka {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Cause.
        source: rdkafka::error::KafkaError,
    },
    /// The HTTP request failed.
    #[error("http post to {url}: {source}")]
    Http {
        /// URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The HTTP endpoint answered with a non-2xx status.
    #[error("http post to {url}: status {status}")]
    HttpStatus {
        /// URL.
        url: String,
        /// Status.
        status: u16,
    },
}

impl InjectError {
    /// Returns true when another attempt may succeed (transport errors, 408, 429 and 5xx).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => !matches!(
                source.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        | rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                        | rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge
                )
            ),
            Self::Http { .. } => true,
            Self::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
        }
    }
}
