//! The health check at start: reachable, credentials accepted, a version new enough for the
//! mode. The sink keeps retrying it (logging each new problem once) and publishes the state on a
//! [`HealthHandle`] for `/readyz`.

use std::sync::Arc;

use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use serde_json::Value;
use tokio::sync::watch;

use super::config::IndexMode;

/// The sink's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    /// Not checked yet.
    Starting,
    /// No answer (connection refused, DNS, TLS, timeout).
    Unreachable(String),
    /// The cluster refused the credentials (401) or the role (403).
    AuthRefused(u16),
    /// The cluster is too old, or the wrong product, for the configured mode.
    VersionTooOld(String),
    /// Something else failed (unexpected status, template installation refused).
    Failing(String),
    /// Checked, templates installed, writing.
    Ready,
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthState::Starting => write!(f, "starting"),
            HealthState::Unreachable(e) => write!(f, "unreachable: {e}"),
            HealthState::AuthRefused(s) => write!(f, "credentials refused (status {s})"),
            HealthState::VersionTooOld(v) => write!(f, "unsupported version: {v}"),
            HealthState::Failing(e) => write!(f, "failing: {e}"),
            HealthState::Ready => write!(f, "ready"),
        }
    }
}

/// Read side of the sink's health, for `/readyz`; cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    rx: watch::Receiver<HealthState>,
}

impl HealthHandle {
    /// Returns true once the cluster passed the check and templates are installed.
    pub fn is_ready(&self) -> bool {
        *self.rx.borrow() == HealthState::Ready
    }

    /// Returns the current state.
    pub fn state(&self) -> HealthState {
        self.rx.borrow().clone()
    }
}

/// Write side of the health state.
#[derive(Debug, Clone)]
pub(crate) struct HealthPublisher {
    tx: Arc<watch::Sender<HealthState>>,
}

impl HealthPublisher {
    pub(crate) fn new() -> (Self, HealthHandle) {
        let (tx, rx) = watch::channel(HealthState::Starting);
        (Self { tx: Arc::new(tx) }, HealthHandle { rx })
    }

    /// Publishes `state`; returns true when it changed (so callers log only changes).
    pub(crate) fn publish(&self, state: HealthState) -> bool {
        self.tx.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        })
    }
}

/// What the cluster said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `version.number`.
    pub version: String,
    /// `version.distribution` (`opensearch`) or empty for Elasticsearch.
    pub distribution: String,
}

/// Checks the cluster once.
///
/// # Errors
/// The problem as a [`HealthState`] (never `Ready` or `Starting`).
pub async fn check(client: &Elasticsearch, mode: IndexMode) -> Result<ClusterInfo, HealthState> {
    let response = client
        .send::<&[u8], ()>(Method::Get, "/", HeaderMap::new(), None, None, None)
        .await
        .map_err(|err| HealthState::Unreachable(err.to_string()))?;
    let status = response.status_code().as_u16();
    if status == 401 || status == 403 {
        return Err(HealthState::AuthRefused(status));
    }
    if !(200..300).contains(&status) {
        return Err(HealthState::Failing(format!("GET / answered {status}")));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|err| HealthState::Failing(format!("GET / body: {err}")))?;
    let info = ClusterInfo {
        version: body["version"]["number"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        distribution: body["version"]["distribution"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    check_version(&info, mode)?;
    Ok(info)
}

/// Elasticsearch 7.10+ has composable templates, data streams and ILM; OpenSearch only fits
/// index mode (it has no ILM).
pub(crate) fn check_version(info: &ClusterInfo, mode: IndexMode) -> Result<(), HealthState> {
    let mut parts = info
        .version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let opensearch = info.distribution == "opensearch";
    let ok = match (opensearch, mode) {
        (true, IndexMode::Index) => major >= 1,
        (true, IndexMode::DataStream) => false,
        (false, _) => (major, minor) >= (7, 10),
    };
    if ok {
        Ok(())
    } else if opensearch {
        Err(HealthState::VersionTooOld(format!(
            "OpenSearch {} has no ILM: set mode = \"index\"",
            info.version
        )))
    } else {
        Err(HealthState::VersionTooOld(format!(
            "Elasticsearch {} is older than 7.10",
            info.version
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str, distribution: &str) -> ClusterInfo {
        ClusterInfo {
            version: version.into(),
            distribution: distribution.into(),
        }
    }

    #[test]
    fn versions_are_checked_per_mode() {
        assert!(check_version(&info("8.15.0", ""), IndexMode::DataStream).is_ok());
        assert!(check_version(&info("7.10.2", ""), IndexMode::Index).is_ok());
        assert!(check_version(&info("7.9.0", ""), IndexMode::DataStream).is_err());
        assert!(check_version(&info("6.8.0", ""), IndexMode::Index).is_err());
        assert!(check_version(&info("3.8.0", "opensearch"), IndexMode::Index).is_ok());
        assert!(check_version(&info("3.8.0", "opensearch"), IndexMode::DataStream).is_err());
    }

    #[test]
    fn publisher_reports_changes_only() {
        let (publisher, handle) = HealthPublisher::new();
        assert!(!handle.is_ready());
        assert!(publisher.publish(HealthState::Unreachable("x".into())));
        assert!(!publisher.publish(HealthState::Unreachable("x".into())));
        assert!(publisher.publish(HealthState::Ready));
        assert!(handle.is_ready());
    }
}
