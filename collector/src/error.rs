//! Errors at the collector's boundaries: configuration and startup/serving.

use std::net::SocketAddr;

/// A configuration value refused by [`CollectorConfig::validate`](crate::CollectorConfig::validate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Path of the offending field relative to the collector section, e.g. `otlp.grpc_address`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Failures of [`Collector::build`](crate::Collector::build) and
/// [`Collector::run`](crate::Collector::run).
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// A receiver socket could not be bound.
    #[error("failed to bind the OTLP/{transport} receiver on {address}")]
    Bind {
        /// `grpc` or `http`.
        transport: &'static str,
        /// The configured address.
        address: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A receiver stopped with an error while serving.
    #[error("the OTLP/{transport} receiver on {address} failed")]
    Serve {
        /// `grpc` or `http`.
        transport: &'static str,
        /// The bound address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A task of the collector panicked or was cancelled.
    #[error("the collector {task} task ended abnormally")]
    Task {
        /// Which task: `grpc`, `http` or `deriver`.
        task: &'static str,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}
