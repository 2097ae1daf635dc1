//! Helpers for `pipewarden silence ...` / `pipewarden alerts ...` subcommands: they call the
//! running process's API.
//! `base_url` is the alerting API root, e.g. `http://127.0.0.1:9464/api/v1/alerting`.
//!
//! The same calls by hand:
//!
//! ```text
//! curl -X POST $BASE/silences -H 'content-type: application/json' \
//!      -d '{"matchers":["alertname=Lagging","cluster=main"],"duration":"2h","created_by":"me","comment":"broker upgrade"}'
//! curl $BASE/silences
//! curl -X DELETE $BASE/silences/s-0123456789abcdef
//! ```

use serde_json::Value;

use super::silence::SilenceRequest;

/// A CLI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The request could not be made.
    #[error("request to {url} failed: {message}")]
    Http {
        /// URL called.
        url: String,
        /// Cause.
        message: String,
    },
    /// The API answered with an error.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
}

async fn call(request: reqwest::RequestBuilder, url: String) -> Result<Value, CliError> {
    let http = |e: reqwest::Error| CliError::Http {
        url: url.clone(),
        message: e.to_string(),
    };
    let response = request.send().await.map_err(http)?;
    let status = response.status();
    let text = response.text().await.map_err(http)?;
    if !status.is_success() {
        return Err(CliError::Status {
            url,
            status: status.as_u16(),
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| CliError::Http {
        url,
        message: format!("bad JSON answer: {e}"),
    })
}

/// Creates a silence; returns the API's `{"silence": ...}` answer.
///
/// # Errors
/// [`CliError`] when the call fails or the API refuses the request.
pub async fn silence_create(base_url: &str, request: &SilenceRequest) -> Result<Value, CliError> {
    let url = format!("{}/silences", base_url.trim_end_matches('/'));
    call(reqwest::Client::new().post(&url).json(request), url).await
}

/// Lists silences; returns the API's `{"silences": [...]}` answer.
///
/// # Errors
/// [`CliError`] when the call fails.
pub async fn silence_list(base_url: &str) -> Result<Value, CliError> {
    let url = format!("{}/silences", base_url.trim_end_matches('/'));
    call(reqwest::Client::new().get(&url), url).await
}

/// Expires a silence now; returns the API's `{"silence": ...}` answer.
///
/// # Errors
/// [`CliError`] when the call fails or no silence has this id.
pub async fn silence_expire(base_url: &str, id: &str) -> Result<Value, CliError> {
    let url = format!("{}/silences/{id}", base_url.trim_end_matches('/'));
    call(reqwest::Client::new().delete(&url), url).await
}

/// Lists current alerts; returns the API's `{"alerts": [...]}` answer.
///
/// # Errors
/// [`CliError`] when the call fails.
pub async fn alerts_list(base_url: &str) -> Result<Value, CliError> {
    let url = format!("{}/alerts", base_url.trim_end_matches('/'));
    call(reqwest::Client::new().get(&url), url).await
}

/// Lists incidents; returns the API's `{"incidents": [...]}` answer.
///
/// # Errors
/// [`CliError`] when the call fails.
pub async fn incidents_list(base_url: &str) -> Result<Value, CliError> {
    let url = format!("{}/incidents", base_url.trim_end_matches('/'));
    call(reqwest::Client::new().get(&url), url).await
}
