//! Notifiers: how a [`Notification`] becomes an HTTP request for each kind of receiver, and
//! how a failed request is classified (retry or give up).
//!
//! * [`webhook`]: the Alertmanager v4 webhook body, so existing webhook receivers work.
//! * [`slack`]: a Slack-compatible incoming webhook (`text`, optional `blocks`).
//! * [`alertmanager`]: `POST <url>/api/v2/alerts` with Alertmanager's alert array.
//!
//! Every request carries the notification id in `Idempotency-Key` and
//! `X-Pipewarden-Notification-Id`, so a receiver can drop the rare duplicate (a delivery whose
//! confirmation was lost to a crash is sent again after the restart).

pub mod alertmanager;
pub(crate) mod delivery;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use serde_json::Value;

use super::config::ReceiverConfig;
use super::model::Notification;

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No response within the attempt timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The receiver answered with a non-success status.
    #[error("status {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
        /// `Retry-After` in seconds, when given.
        retry_after: Option<Duration>,
    },
    /// The request could not be built or sent for another reason.
    #[error("request failed: {0}")]
    Request(String),
}

impl SendError {
    /// Returns true when trying again may succeed: timeouts, connection failures, 408, 429
    /// and 5xx. Other 4xx mean the receiver refuses this request for good.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connect(_) | Self::Request(_) => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
        }
    }

    /// Returns the telemetry reason (`timeout`, `connect`, `status_429`, `status_4xx`,
    /// `status_5xx`, `request`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Request(_) => "request",
            Self::Status { status: 429, .. } => "status_429",
            Self::Status { status, .. } if *status >= 500 => "status_5xx",
            Self::Status { .. } => "status_4xx",
        }
    }

    /// Returns the delay the receiver asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A receiver ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    pub(crate) name: String,
    pub(crate) config: ReceiverConfig,
    url: String,
    headers: Vec<(String, String)>,
}

impl Notifier {
    pub(crate) fn new(config: &ReceiverConfig) -> Self {
        let (url, headers) = match config {
            ReceiverConfig::Webhook(r) => (r.url.clone(), r.headers.clone()),
            ReceiverConfig::Slack(r) => (r.url.clone(), Default::default()),
            ReceiverConfig::Alertmanager(r) => (
                format!("{}/api/v2/alerts", r.url.trim_end_matches('/')),
                r.headers.clone(),
            ),
        };
        Self {
            name: config.name().to_owned(),
            config: config.clone(),
            url,
            headers: headers.into_iter().collect(),
        }
    }

    /// Returns the JSON body for `notification`, or `None` when this receiver has nothing to
    /// send (only resolved alerts and `send_resolved = false`).
    pub(crate) fn body(&self, notification: &Notification, external_url: &str) -> Option<Value> {
        match &self.config {
            ReceiverConfig::Webhook(r) => webhook::body(notification, r, external_url),
            ReceiverConfig::Slack(r) => slack::body(notification, r),
            ReceiverConfig::Alertmanager(r) => alertmanager::body(notification, r),
        }
    }

    /// POSTs `body` within `timeout`.
    pub(crate) async fn send(
        &self,
        client: &reqwest::Client,
        notification_id: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let mut request = client
            .post(&self.url)
            .header("Idempotency-Key", notification_id)
            .header("X-Pipewarden-Notification-Id", notification_id)
            .json(body);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let attempt = async {
            let response = request.send().await.map_err(classify)?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = response.text().await.unwrap_or_default();
            if body.len() > 200 {
                let mut end = 200;
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                body.truncate(end);
            }
            Err(SendError::Status {
                status: status.as_u16(),
                body,
                retry_after,
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }
}

fn classify(err: reqwest::Error) -> SendError {
    if err.is_timeout() {
        SendError::Timeout(Duration::ZERO)
    } else if err.is_connect() {
        SendError::Connect(err.to_string())
    } else {
        SendError::Request(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let status = |status| SendError::Status {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(status(503).is_retriable());
        assert!(status(429).is_retriable());
        assert!(status(408).is_retriable());
        assert!(!status(400).is_retriable());
        assert!(!status(404).is_retriable());
        assert!(SendError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(SendError::Connect("refused".into()).is_retriable());
        assert_eq!(status(503).reason(), "status_5xx");
        assert_eq!(status(429).reason(), "status_429");
        assert_eq!(status(401).reason(), "status_4xx");
    }
}
