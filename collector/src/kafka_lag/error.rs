//! Errors of the Kafka lag source.

/// Failures of [`KafkaLagSource::build`](super::KafkaLagSource::build) and of one poll.
///
/// Poll failures never stop the source: they are counted, logged (rate-limited), make the
/// cluster unhealthy and are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum KafkaLagError {
    /// librdkafka refused to create a client for a cluster.
    #[error("cannot create the kafka client for cluster {cluster}")]
    Client {
        /// Cluster name.
        cluster: String,
        /// The librdkafka error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A broker request failed (timeout, connection refused, error code).
    #[error("{request} request to cluster {cluster} failed: {message}")]
    Request {
        /// Cluster name.
        cluster: String,
        /// Which request: `metadata`, `list_groups`, `find_coordinator`, `offset_fetch`,
        /// `list_offsets`, `fetch_timestamps`.
        request: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A blocking client task panicked or was cancelled.
    #[error("a kafka client task of cluster {cluster} ended abnormally")]
    Task {
        /// Cluster name.
        cluster: String,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl KafkaLagError {
    /// Returns the request kind for the errors label (`client`, `task` or the request name).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Client { .. } => "client",
            Self::Request { request, .. } => request,
            Self::Task { .. } => "task",
        }
    }
}
