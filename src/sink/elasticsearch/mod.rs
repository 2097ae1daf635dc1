//! The Elasticsearch sink: everything pipewarden produces (anomalies, stage windows, lag,
//! probe results, alerts) written to Elasticsearch through the official client.
//!
//! - **Config** ([`ElasticsearchConfig`] -> [`ValidElasticsearchConfig`]): URLs, auth (basic, API
//!   key, bearer), CA file, namespace, `data_stream` or `index` mode, retention, batching,
//!   retries, spool, dead-letter file, redaction rules.
//! - **Start** ([`ElasticsearchSink::run`]): a health check (unreachable, credentials refused,
//!   version too old) retried with backoff and published on a [`HealthHandle`]; then templates
//!   (and in data-stream mode an ILM policy) installed idempotently. Data streams follow
//!   `type-dataset-namespace` (`logs-pipewarden.anomaly-default`, ...); index mode writes dated
//!   indices (`pipewarden-anomaly-default-2025.01.31`) and an hourly job deletes expired ones.
//! - **Durability** ([`SinkInput::send`]): documents are redacted and appended to an on-disk
//!   spool and synced before `send` returns; they leave the spool only after the cluster
//!   confirmed them. Ids are deterministic and written with `create` (`409` = already there), so
//!   replays after a crash never duplicate.
//! - **Writing**: batches by count, bytes and time; up to `max_in_flight` bulk requests; every
//!   item checked; 429/5xx items retried with jittered exponential backoff; permanent refusals
//!   (400 and the like) go to the dead-letter index and the local dead-letter file, counted.

mod config;
#[cfg(test)]
mod dashboards_tests;
mod document;
mod health;
pub mod redact;
mod retry;
mod service;
mod sink;
mod spool;
mod telemetry;
mod templates;

pub use config::{
    AuthConfig, BatchConfig, ConfigError, ElasticsearchConfig, IndexMode, RetryConfig, SpoolConfig,
    ValidElasticsearchConfig, WhenFull,
};
pub use document::{EsDocument, IndexKind, LagReading, content_id, rfc3339_millis};
pub use health::{HealthHandle, HealthState};
pub use redact::{RedactionConfig, Redactor};
pub use retry::{SendError, Verdict, classify_status};
pub use sink::{ElasticsearchError, ElasticsearchSink, SinkInput};
pub use spool::SpoolError;
pub use telemetry::{EsTelemetry, ReasonLabel};
pub use templates::ilm_policy_name;
