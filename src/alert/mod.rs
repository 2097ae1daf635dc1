//! Alerting: rules over the pipeline's signals, an alert lifecycle, grouping, inhibition,
//! silences, correlated incidents, notifications with retries, and state that survives restarts.
//!
//! # Semantics
//!
//! * **Rules** (`[[alert.rules]]`, see [`RuleConfig`]) turn inputs into *conditions*, one per
//!   alert instance (a series, a consumer group, a probe, an SLO window pair): a threshold on a
//!   series, an anomaly score at least X for N consecutive points, a lag verdict at least a
//!   status, a probe down in N of its last M runs, and SLOs with multi-window burn rates.
//! * **Lifecycle**: a condition that turns true makes a *pending* alert; after the rule's `for`
//!   it is *firing*; when the condition clears, the alert keeps firing for `resolve_hold_down`
//!   (flap damping: a condition that returns within it continues the same alert, with no new
//!   notification) and is then *resolved*.
//! * **Grouping** follows Alertmanager: alerts with equal `route.group_by` labels share a group;
//!   a new group waits `group_wait` before its first notification, later changes wait for the
//!   next `group_interval`, and an unchanged firing group is re-sent every `repeat_interval`.
//! * **Muting**: a silence (label matchers and a time range, created and expired through the API)
//!   or an inhibition rule (a firing source alert mutes targets with the same `equal` labels)
//!   keeps an alert out of notifications; it still shows in the API with the reason.
//! * **Incidents**: firing alerts sharing a correlation label (`stage` by default) within
//!   `incidents.window` of each other form one incident listing all their evidence.
//! * **Delivery**: every notification goes to a persisted outbox (one row per receiver) in the
//!   same transaction as the state that produced it, and a separate task delivers it with
//!   per-attempt timeouts, exponential backoff with jitter, in order per receiver. A delivered
//!   row is never sent again; a restart resumes what was not delivered.
//!
//! The [`AlertEngine`] is synchronous and deterministic (time is an argument); the
//! [`AlertService`] wraps it in one `select!` loop fed by an [`AlertInput`] and a tick.
//!
//! # Wiring (in the app)
//!
//! ```ignore
//! // config: `pub alert: AlertConfig` in the file; `config.alert.validate()` maps
//! // `AlertConfigError { field, problem }` to the path `alert.<field>`.
//! let alert_telemetry = AlertTelemetry::register(&mut registry);
//! let (alerts, alert_input) =
//!     AlertService::build(valid.alert, &valid.store.path, alert_telemetry)?;
//! let alert_handle = alerts.handle();
//! let alert_task = tokio::spawn(alerts.run(shutdown.child_token()));
//! // Detector loop, before the batch goes to the store:
//! alert_input.send_store_batch(&batch).await?;
//! // Kafka lag source, per report and group:
//! alert_input.send(vec![AlertEvent::Lag(LagVerdictInput { cluster, group,
//!     status: group.status.as_str().into(), timestamp_ms })]).await?;
//! // Probes: AlertEvent::Probe(ProbeResultInput { .. }).
//! // Web: router.nest("/api/v1/alerting", alert::api::router(alert_handle.clone()));
//! // /readyz: "alerts": alert_handle.health().status()  // ready | degraded | not_ready
//! ```

pub mod api;
pub mod cli;
mod config;
mod engine;
mod group;
mod incident;
mod input;
mod matcher;
mod model;
pub mod notify;
mod rule;
mod service;
mod silence;
mod store;
mod telemetry;

pub mod burn_rate;

pub use config::{
    AlertConfig, AlertConfigError, AnomalyRuleConfig, BurnWindowConfig, DeliveryConfig,
    HistoryConfig, IncidentConfig, InhibitRuleConfig, LagRuleConfig, ProbeRuleConfig,
    ReceiverConfig, RouteConfig, RuleConfig, SliConfig, SloRuleConfig, ThresholdOp,
    ThresholdRuleConfig, ValidAlertConfig,
};
pub use engine::AlertEngine;
pub use incident::{Incident, IncidentEvidence, IncidentStatus};
pub use input::{
    AlertEvent, AnomalyInput, LagVerdictInput, PointInput, ProbeResultInput, SpanSliInput,
};
pub use matcher::{Matcher, MatcherError};
pub use model::{
    Alert, AlertStatus, HistoryEvent, Labels, Notification, NotificationKind, fingerprint,
};
pub use service::{
    AlertHandle, AlertHealth, AlertInput, AlertInputClosed, AlertService, Clock, ReceiverHealth,
};
pub use silence::{Silence, SilenceRequest, SilenceState};
pub use telemetry::AlertTelemetry;

use std::path::PathBuf;

/// A failure of the alert service (store, HTTP client, a bad request through the handle).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// Directory path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// SQLite refused an operation on the alert tables.
    #[error("alert store {path}: {source}")]
    Store {
        /// Database path.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// Persisted state could not be decoded.
    #[error("alert store {path}: cannot decode {what}: {source}")]
    Decode {
        /// Database path.
        path: PathBuf,
        /// What was being decoded.
        what: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A blocking store task did not complete.
    #[error("alert store task failed: {0}")]
    Join(String),
    /// The HTTP client for the receivers could not be built.
    #[error("building the notification http client: {0}")]
    HttpClient(String),
    /// A silence request is invalid (the message names the field).
    #[error("{0}")]
    BadSilence(String),
    /// No silence has this id.
    #[error("no silence with id {0}")]
    SilenceNotFound(String),
}

#[cfg(test)]
mod tests;
